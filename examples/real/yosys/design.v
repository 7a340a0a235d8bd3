// Sample input for the yosys job (examples/real/README.md): a small datapath that makes
// synthesis do real work: a 16-bit LFSR feeding a multiply-accumulate unit, a barrel
// shifter and a comparator tree, all registered.
module top (
    input  wire        clk,
    input  wire        rst,
    input  wire [15:0] a,
    input  wire [3:0]  shift,
    output reg  [31:0] acc,
    output reg  [15:0] shifted,
    output reg  [3:0]  max_index
);
    reg [15:0] lfsr;
    wire feedback = lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10];

    reg [15:0] window [0:3];
    integer i;
    reg [15:0] best;

    always @(posedge clk) begin
        if (rst) begin
            lfsr <= 16'hACE1;
            acc <= 32'd0;
            shifted <= 16'd0;
            max_index <= 4'd0;
            for (i = 0; i < 4; i = i + 1)
                window[i] <= 16'd0;
        end else begin
            lfsr <= {lfsr[14:0], feedback};
            acc <= acc + a * lfsr;
            shifted <= (a << shift) | (a >> (16 - shift));
            window[0] <= a ^ lfsr;
            for (i = 1; i < 4; i = i + 1)
                window[i] <= window[i - 1];
            best = window[0];
            max_index <= 4'd0;
            for (i = 1; i < 4; i = i + 1)
                if (window[i] > best) begin
                    best = window[i];
                    max_index <= i[3:0];
                end
        end
    end
endmodule
