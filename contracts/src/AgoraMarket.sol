// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title AgoraMarket: escrow, provider stake and slashing for Agora over one ERC-20 token.
/// @notice The same rules as Agora's embedded ledger (crates/agora-ledger/src/machine.rs):
/// internal balances, escrow per order id, a market fee per payout line rounded down, stake
/// with an unbonding delay in blocks, and slashes split between a beneficiary and a burn.
/// @dev Bounded operator power: the market authority can only release an open escrow to the
/// providers it assigned (once, before any release) within what remains locked, refund it to
/// its buyer, burn part of it, and slash bonded or unbonding stake once per evidence hash.
/// It cannot pause, upgrade, change parameters, move balances or block withdrawals; every
/// parameter is immutable. Burnt tokens stay locked in this contract forever and are counted
/// in `totals.burnt`, so `token.balanceOf(this) == balances + escrowed + staked + burnt`
/// (plus anything sent here directly, outside `deposit`).
contract AgoraMarket is ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// Basis points in one whole (100 %).
    uint16 public constant BPS_DENOMINATOR = 10_000;
    /// The most payees (and assigned providers) one escrow operation may name.
    uint256 public constant MAX_PAYOUTS = 64;
    /// The longest slash reason accepted, in bytes.
    uint256 public constant MAX_REASON_BYTES = 256;

    /// Operation kinds of `settleBatch`.
    uint8 public constant OP_RELEASE = 0;
    uint8 public constant OP_REFUND = 1;
    uint8 public constant OP_BURN = 2;
    uint8 public constant OP_ASSIGN = 3;
    /// A release followed by a refund of what remains: one job settled in one operation
    /// (two ledger transactions, so it advances `authorityNonce` by two; by one if the
    /// release left nothing to refund).
    uint8 public constant OP_SETTLE = 4;
    /// A payment from the authority's own balance (the verification fund: its share of
    /// slashes) to `payouts[0].payee`: the ledger's `Transfer` signed by the authority,
    /// which pays audits and tie-breaking runs. One ledger operation.
    uint8 public constant OP_PAY = 5;

    IERC20 public immutable token;
    address public immutable authority;
    address public immutable treasury;
    uint16 public immutable feeBps;
    uint16 public immutable slashBeneficiaryBps;
    uint64 public immutable unbondingPeriodBlocks;
    /// Bonded stake a provider needs to be assigned an order.
    uint64 public immutable minStake;

    enum Status {
        None,
        Open,
        Released,
        Refunded
    }

    /// One order's escrow, in three storage slots: settling writes only the first.
    struct Escrow {
        // slot 0: everything settlement reads and writes
        uint64 locked;
        uint64 remaining;
        uint64 released;
        uint56 deadlineMs;
        Status status;
        // slot 1
        address buyer;
        // slot 2: the first 20 bytes of keccak256(abi.encode(providers)); zero: unassigned
        bytes20 assigned;
    }

    struct Unbonding {
        uint64 amount;
        uint64 maturesAt;
    }

    struct Stake {
        uint64 bonded;
        Unbonding[] unbonding;
    }

    /// Where every token this contract accounts for sits; one slot.
    struct Totals {
        uint64 balances;
        uint64 escrowed;
        uint64 staked;
        uint64 burnt;
    }

    struct Payout {
        address payee;
        uint64 gross;
    }

    /// One operation of `settleBatch`. `amount` is the burn amount (OP_BURN);
    /// `providers` is the assignment (OP_ASSIGN) or the assignment being paid (OP_RELEASE,
    /// OP_SETTLE); `payouts` are the gross payout lines (OP_RELEASE, OP_SETTLE) or the one
    /// payment (OP_PAY, whose `orderId` is only a label).
    struct Op {
        uint8 kind;
        bytes32 orderId;
        uint64 amount;
        address[] providers;
        Payout[] payouts;
    }

    mapping(address => uint64) public balanceOf;
    mapping(bytes32 => Escrow) internal escrows;
    mapping(address => Stake) internal stakes;
    mapping(bytes32 => bool) public evidenceUsed;
    Totals public totals;
    /// How many Agora transactions the authority has had applied (its ledger nonce).
    uint64 public authorityNonce;

    event Deposited(address indexed account, uint64 amount);
    event Withdrawn(address indexed account, uint64 amount);
    event Transferred(address indexed from, address indexed to, uint64 amount);
    event EscrowOpened(bytes32 indexed orderId, address indexed buyer, uint64 amount, uint64 deadlineMs);
    event Assigned(bytes32 indexed orderId, address[] providers);
    event Released(bytes32 indexed orderId, address indexed payee, uint64 net, uint64 fee);
    event Refunded(bytes32 indexed orderId, address indexed buyer, uint64 amount);
    event EscrowBurned(bytes32 indexed orderId, uint64 amount);
    event Bonded(address indexed account, uint64 amount);
    event UnbondingStarted(address indexed account, uint64 amount, uint64 maturesAt);
    event StakeWithdrawn(address indexed account, uint64 amount);
    event Slashed(
        address indexed provider,
        uint64 amount,
        address indexed beneficiary,
        uint64 reward,
        uint64 burned,
        bytes32 indexed evidence,
        string reason
    );
    /// An operation of a batch that was refused and changed nothing; `reason` is the
    /// selector of the custom error a single call would have reverted with.
    event OpSkipped(uint256 index, bytes32 indexed orderId, bytes4 reason);

    error ZeroAmount();
    error InsufficientBalance(address account, uint64 have, uint256 need);
    error UnknownEscrow(bytes32 orderId);
    error EscrowExists(bytes32 orderId);
    error EscrowClosed(bytes32 orderId, Status status);
    error ReleaseExceedsEscrow(bytes32 orderId, uint64 remaining, uint256 requested);
    error NoPayouts();
    error TooManyPayouts(uint256 count, uint256 max);
    error DeadlineNotInFuture(uint256 deadlineMs, uint256 nowMs);
    error DeadlineNotReached(uint256 deadlineMs, uint256 nowMs);
    error Unauthorized(address sender);
    error UnbondExceedsBonded(address account, uint64 bonded, uint256 requested);
    error NothingToWithdraw(address account);
    error UnbondingNotMatured(address account, uint64 maturesAt, uint256 height);
    error SlashExceedsStake(address provider, uint256 stake, uint256 requested);
    error EvidenceAlreadyUsed(bytes32 evidence);
    error ReasonTooLong(uint256 len, uint256 max);
    error Overflow();
    error NotAssigned(bytes32 orderId, address payee);
    error AlreadyAssigned(bytes32 orderId);
    error StakeBelowMinimum(address provider, uint64 bonded, uint64 minimum);
    error AuthorityNonceMismatch(uint64 expected, uint64 found);
    error UnknownOp(uint8 kind);
    error BadParameter();

    constructor(
        IERC20 token_,
        address authority_,
        address treasury_,
        uint16 feeBps_,
        uint16 slashBeneficiaryBps_,
        uint64 unbondingPeriodBlocks_,
        uint64 minStake_
    ) {
        if (
            address(token_) == address(0) || authority_ == address(0) || treasury_ == address(0)
                || feeBps_ > BPS_DENOMINATOR || slashBeneficiaryBps_ > BPS_DENOMINATOR
        ) revert BadParameter();
        token = token_;
        authority = authority_;
        treasury = treasury_;
        feeBps = feeBps_;
        slashBeneficiaryBps = slashBeneficiaryBps_;
        unbondingPeriodBlocks = unbondingPeriodBlocks_;
        minStake = minStake_;
    }

    // ---------------------------------------------------------------- views

    function escrowOf(bytes32 orderId) external view returns (Escrow memory) {
        return escrows[orderId];
    }

    function stakeOf(address account) external view returns (uint64 bonded, Unbonding[] memory unbonding) {
        Stake storage s = stakes[account];
        return (s.bonded, s.unbonding);
    }

    // ---------------------------------------------------------------- accounts' own calls

    /// Moves `amount` tokens from the sender (who approved this contract) into its balance.
    /// Credits what actually arrived, so a token that skims on transfer cannot inflate it.
    function deposit(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        Totals memory t = totals;
        if (uint256(t.balances) + t.escrowed + t.staked + t.burnt + received > type(uint64).max) revert Overflow();
        uint64 credited = uint64(received);
        balanceOf[msg.sender] += credited;
        t.balances += credited;
        totals = t;
        emit Deposited(msg.sender, credited);
    }

    /// Sends `amount` of the sender's balance out as tokens. Never paused, never refused
    /// while the balance covers it.
    function withdraw(uint64 amount) external nonReentrant {
        _debit(msg.sender, amount);
        totals.balances -= amount;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    function transfer(address to, uint64 amount) external nonReentrant {
        _debit(msg.sender, amount);
        balanceOf[to] += amount;
        emit Transferred(msg.sender, to, amount);
    }

    /// Locks `amount` of the buyer's (the sender's) balance for `orderId`.
    function openEscrow(bytes32 orderId, uint64 amount, uint64 deadlineMs) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Escrow storage e = escrows[orderId];
        if (e.status != Status.None) revert EscrowExists(orderId);
        uint256 nowMs = block.timestamp * 1000;
        if (deadlineMs <= nowMs) revert DeadlineNotInFuture(deadlineMs, nowMs);
        if (deadlineMs > type(uint56).max) revert Overflow();
        _debit(msg.sender, amount);
        e.locked = amount;
        e.remaining = amount;
        e.deadlineMs = uint56(deadlineMs);
        e.status = Status.Open;
        e.buyer = msg.sender;
        Totals memory t = totals;
        t.balances -= amount;
        t.escrowed += amount;
        totals = t;
        emit EscrowOpened(orderId, msg.sender, amount, deadlineMs);
    }

    /// Returns what remains of an escrow to its buyer once its deadline has passed; anyone
    /// may call it, so a buyer can always reclaim an escrow the market never settled.
    function refund(bytes32 orderId) external nonReentrant {
        Escrow storage e = escrows[orderId];
        bytes4 err = _checkOpen(e, orderId);
        if (err != 0) _revertWith(err, orderId, e);
        uint256 nowMs = block.timestamp * 1000;
        if (nowMs < e.deadlineMs) revert DeadlineNotReached(e.deadlineMs, nowMs);
        Totals memory t = totals;
        _refund(e, orderId, t);
        totals = t;
    }

    function bond(uint64 amount) external nonReentrant {
        _debit(msg.sender, amount);
        stakes[msg.sender].bonded += amount;
        Totals memory t = totals;
        t.balances -= amount;
        t.staked += amount;
        totals = t;
        emit Bonded(msg.sender, amount);
    }

    /// Starts unbonding: the stake stays slashable for `unbondingPeriodBlocks` blocks, then
    /// `withdrawStake` returns it. Entries maturing at the same block merge.
    function unbond(uint64 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Stake storage s = stakes[msg.sender];
        if (amount > s.bonded) revert UnbondExceedsBonded(msg.sender, s.bonded, amount);
        uint256 maturesAt = block.number + unbondingPeriodBlocks;
        if (maturesAt > type(uint64).max) revert Overflow();
        s.bonded -= amount;
        uint256 n = s.unbonding.length;
        if (n > 0 && s.unbonding[n - 1].maturesAt == maturesAt) {
            s.unbonding[n - 1].amount += amount;
        } else {
            s.unbonding.push(Unbonding(amount, uint64(maturesAt)));
        }
        emit UnbondingStarted(msg.sender, amount, uint64(maturesAt));
    }

    /// Moves every matured unbonding entry of the sender back to its balance. Entries are
    /// appended in maturity order, so the matured ones are a prefix.
    function withdrawStake() external nonReentrant {
        Stake storage s = stakes[msg.sender];
        uint256 n = s.unbonding.length;
        if (n == 0) revert NothingToWithdraw(msg.sender);
        uint256 matured;
        uint64 amount;
        while (matured < n && s.unbonding[matured].maturesAt <= block.number) {
            amount += s.unbonding[matured].amount;
            ++matured;
        }
        if (matured == 0) revert UnbondingNotMatured(msg.sender, s.unbonding[0].maturesAt, block.number);
        for (uint256 i = matured; i < n; ++i) {
            s.unbonding[i - matured] = s.unbonding[i];
        }
        for (uint256 i; i < matured; ++i) {
            s.unbonding.pop();
        }
        balanceOf[msg.sender] += amount;
        Totals memory t = totals;
        t.staked -= amount;
        t.balances += amount;
        totals = t;
        emit StakeWithdrawn(msg.sender, amount);
    }

    // ---------------------------------------------------------------- the market authority

    /// Applies escrow operations in order. An operation that breaks a rule is skipped with an
    /// `OpSkipped` event and changes nothing, so one stale order (already settled, say) never
    /// reverts the rest: settling an order twice finds it closed and is skipped. Releases,
    /// refunds and burns are the authority's ledger transactions: `firstNonce` must be
    /// `authorityNonce`, which advances by the number applied. Fees are summed in memory and
    /// credited to the treasury once per batch.
    function settleBatch(uint64 firstNonce, Op[] calldata ops) external returns (uint256 applied) {
        if (msg.sender != authority) revert Unauthorized(msg.sender);
        if (firstNonce != authorityNonce) revert AuthorityNonceMismatch(authorityNonce, firstNonce);
        Totals memory t = totals;
        uint64 fees;
        uint64 ledgerOps;
        for (uint256 i; i < ops.length; ++i) {
            Op calldata op = ops[i];
            bytes4 err;
            if (op.kind == OP_RELEASE || op.kind == OP_SETTLE) {
                uint64 fee;
                (err, fee) = _release(op, t);
                fees += fee;
                if (err == 0 && op.kind == OP_SETTLE) {
                    Escrow storage e = escrows[op.orderId];
                    // A release of everything closed it already: one ledger operation only.
                    if (e.status == Status.Open) {
                        _refund(e, op.orderId, t);
                        ++ledgerOps;
                    }
                }
            } else if (op.kind == OP_REFUND) {
                Escrow storage e = escrows[op.orderId];
                err = _checkOpen(e, op.orderId);
                if (err == 0) _refund(e, op.orderId, t);
            } else if (op.kind == OP_BURN) {
                err = _burn(op.orderId, op.amount, t);
            } else if (op.kind == OP_ASSIGN) {
                err = _assign(op.orderId, op.providers);
            } else if (op.kind == OP_PAY) {
                err = _pay(op.payouts);
            } else {
                err = UnknownOp.selector;
            }
            if (err == 0) {
                ++applied;
                if (op.kind != OP_ASSIGN) ++ledgerOps;
            } else {
                emit OpSkipped(i, op.orderId, err);
            }
        }
        if (fees != 0) balanceOf[treasury] += fees;
        totals = t;
        if (ledgerOps != 0) authorityNonce = firstNonce + ledgerOps;
    }

    /// Takes `amount` of `provider`'s stake for a proven fault: bonded stake first, then
    /// unbonding entries latest-maturing first. ⌊amount × slashBeneficiaryBps / 10 000⌋ goes to
    /// `beneficiary`, the rest is burnt. Each evidence hash slashes once.
    function slash(
        uint64 nonce,
        address provider,
        uint64 amount,
        bytes32 evidence,
        address beneficiary,
        string calldata reason
    ) external {
        if (msg.sender != authority) revert Unauthorized(msg.sender);
        if (nonce != authorityNonce) revert AuthorityNonceMismatch(authorityNonce, nonce);
        if (amount == 0) revert ZeroAmount();
        if (bytes(reason).length > MAX_REASON_BYTES) revert ReasonTooLong(bytes(reason).length, MAX_REASON_BYTES);
        if (evidenceUsed[evidence]) revert EvidenceAlreadyUsed(evidence);
        _takeStake(provider, amount);
        uint64 reward = uint64((uint256(amount) * slashBeneficiaryBps) / BPS_DENOMINATOR);
        uint64 burned = amount - reward;
        evidenceUsed[evidence] = true;
        balanceOf[beneficiary] += reward;
        Totals memory t = totals;
        t.staked -= amount;
        t.balances += reward;
        t.burnt += burned;
        totals = t;
        authorityNonce = nonce + 1;
        emit Slashed(provider, amount, beneficiary, reward, burned, evidence, reason);
    }

    // ---------------------------------------------------------------- internals

    /// Takes `amount` from `provider`'s stake, bonded first, then unbonding entries from the
    /// latest-maturing back; reverts if the stake is smaller.
    function _takeStake(address provider, uint64 amount) internal {
        Stake storage s = stakes[provider];
        uint256 total = s.bonded;
        uint256 n = s.unbonding.length;
        for (uint256 i; i < n; ++i) {
            total += s.unbonding[i].amount;
        }
        if (amount > total) revert SlashExceedsStake(provider, total, amount);
        uint64 fromBonded = amount < s.bonded ? amount : s.bonded;
        s.bonded -= fromBonded;
        uint64 left = amount - fromBonded;
        while (left > 0) {
            Unbonding storage last = s.unbonding[s.unbonding.length - 1];
            uint64 take = left < last.amount ? left : last.amount;
            last.amount -= take;
            left -= take;
            if (last.amount == 0) s.unbonding.pop();
        }
    }

    function _debit(address account, uint64 amount) internal {
        if (amount == 0) revert ZeroAmount();
        uint64 have = balanceOf[account];
        if (have < amount) revert InsufficientBalance(account, have, amount);
        balanceOf[account] = have - amount;
    }

    function _checkOpen(Escrow storage e, bytes32) internal view returns (bytes4) {
        Status status = e.status;
        if (status == Status.None) return UnknownEscrow.selector;
        if (status != Status.Open) return EscrowClosed.selector;
        return 0;
    }

    /// Reverts with the full error a skipped batch operation only names by selector.
    function _revertWith(bytes4 err, bytes32 orderId, Escrow storage e) internal view {
        if (err == UnknownEscrow.selector) revert UnknownEscrow(orderId);
        revert EscrowClosed(orderId, e.status);
    }

    function _assign(bytes32 orderId, address[] calldata providers) internal returns (bytes4) {
        Escrow storage e = escrows[orderId];
        bytes4 err = _checkOpen(e, orderId);
        if (err != 0) return err;
        if (e.assigned != 0) return AlreadyAssigned.selector;
        uint256 n = providers.length;
        if (n == 0) return NoPayouts.selector;
        if (n > MAX_PAYOUTS) return TooManyPayouts.selector;
        for (uint256 i; i < n; ++i) {
            if (stakes[providers[i]].bonded < minStake) return StakeBelowMinimum.selector;
        }
        e.assigned = bytes20(keccak256(abi.encode(providers)));
        emit Assigned(orderId, providers);
        return 0;
    }

    function _release(Op calldata op, Totals memory t) internal returns (bytes4, uint64) {
        Escrow storage e = escrows[op.orderId];
        bytes4 err = _checkOpen(e, op.orderId);
        if (err != 0) return (err, 0);
        uint256 n = op.payouts.length;
        if (n == 0) return (NoPayouts.selector, 0);
        if (n > MAX_PAYOUTS) return (TooManyPayouts.selector, 0);
        bytes20 assigned = e.assigned;
        if (assigned == 0 || bytes20(keccak256(abi.encode(op.providers))) != assigned) {
            return (NotAssigned.selector, 0);
        }
        uint256 requested;
        for (uint256 i; i < n; ++i) {
            Payout calldata p = op.payouts[i];
            if (p.gross == 0) return (ZeroAmount.selector, 0);
            if (!_contains(op.providers, p.payee)) return (NotAssigned.selector, 0);
            requested += p.gross;
        }
        uint64 remaining = e.remaining;
        if (requested > remaining) return (ReleaseExceedsEscrow.selector, 0);
        // Checked: nothing can fail below.
        uint64 fees;
        for (uint256 i; i < n; ++i) {
            Payout calldata p = op.payouts[i];
            uint64 fee = uint64((uint256(p.gross) * feeBps) / BPS_DENOMINATOR);
            uint64 net = p.gross - fee;
            balanceOf[p.payee] += net;
            fees += fee;
            emit Released(op.orderId, p.payee, net, fee);
        }
        uint64 left = remaining - uint64(requested);
        e.remaining = left;
        e.released += uint64(requested);
        if (left == 0) e.status = Status.Released;
        t.escrowed -= uint64(requested);
        t.balances += uint64(requested);
        return (0, fees);
    }

    function _refund(Escrow storage e, bytes32 orderId, Totals memory t) internal {
        uint64 amount = e.remaining;
        address buyer = e.buyer;
        e.remaining = 0;
        e.status = Status.Refunded;
        balanceOf[buyer] += amount;
        t.escrowed -= amount;
        t.balances += amount;
        emit Refunded(orderId, buyer, amount);
    }

    function _burn(bytes32 orderId, uint64 amount, Totals memory t) internal returns (bytes4) {
        Escrow storage e = escrows[orderId];
        bytes4 err = _checkOpen(e, orderId);
        if (err != 0) return err;
        if (amount == 0) return ZeroAmount.selector;
        uint64 remaining = e.remaining;
        if (amount > remaining) return ReleaseExceedsEscrow.selector;
        e.remaining = remaining - amount;
        if (remaining == amount) e.status = Status.Released;
        t.escrowed -= amount;
        t.burnt += amount;
        emit EscrowBurned(orderId, amount);
        return 0;
    }

    /// Pays one line from the authority's own balance; nothing else it holds can move.
    function _pay(Payout[] calldata payouts) internal returns (bytes4) {
        if (payouts.length != 1) return NoPayouts.selector;
        Payout calldata p = payouts[0];
        if (p.gross == 0) return ZeroAmount.selector;
        uint64 have = balanceOf[authority];
        if (have < p.gross) return InsufficientBalance.selector;
        balanceOf[authority] = have - p.gross;
        balanceOf[p.payee] += p.gross;
        emit Transferred(authority, p.payee, p.gross);
        return 0;
    }

    function _contains(address[] calldata list, address who) internal pure returns (bool) {
        for (uint256 i; i < list.length; ++i) {
            if (list[i] == who) return true;
        }
        return false;
    }
}
