// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title HostileToken: an ERC-20 that attacks the market it is used with, for tests.
/// @notice When armed, every transfer touching `target` first calls back into it with
/// `attack` (for example `withdraw(amount)` or `deposit(amount)`), the classic reentrancy;
/// the outcome is recorded (`reentryAttempts`, `reentrySucceeded`) and the transfer goes on,
/// so a test can see both that the reentry was refused and that the outer call still
/// accounted exactly. With `skimBps` set it also keeps a share of every transfer into
/// `target` (a fee-on-transfer token), which `deposit` must not credit.
contract HostileToken is ERC20 {
    address public target;
    bytes public attack;
    uint16 public skimBps;
    uint256 public reentryAttempts;
    bool public reentrySucceeded;
    bool private inAttack;

    constructor() ERC20("Hostile Credit", "HOST") {}

    function decimals() public pure override returns (uint8) {
        return 0;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// Lets the token contract act as a market account itself (approve, deposit, withdraw),
    /// so that its reentrant calls come from an account that holds a balance.
    function execute(address to, bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory out) = to.call(data);
        if (!ok) {
            assembly {
                revert(add(out, 32), mload(out))
            }
        }
        return out;
    }

    function arm(address target_, bytes calldata attack_, uint16 skimBps_) external {
        target = target_;
        attack = attack_;
        skimBps = skimBps_;
    }

    function _update(address from, address to, uint256 value) internal override {
        address market = target;
        if (market != address(0) && (from == market || to == market) && attack.length != 0 && !inAttack) {
            inAttack = true;
            reentryAttempts += 1;
            (bool ok,) = market.call(attack);
            if (ok) reentrySucceeded = true;
            inAttack = false;
        }
        if (market != address(0) && to == market && skimBps != 0 && from != address(0)) {
            uint256 skim = (value * skimBps) / 10_000;
            super._update(from, address(0xdEaD), skim);
            value -= skim;
        }
        super._update(from, to, value);
    }
}
