// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken: a plain ERC-20 anyone can mint, for tests and devnets only.
contract TestToken is ERC20 {
    constructor() ERC20("Agora Test Credit", "AGT") {}

    /// Whole units are not used anywhere: one base unit is one Agora base unit.
    function decimals() public pure override returns (uint8) {
        return 0;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
