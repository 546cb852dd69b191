// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MarginAccount} from "../../contracts/MarginAccount.sol";
import {MarginLens} from "../../contracts/periphery/MarginLens.sol";
import {GasProbe} from "../../contracts/mocks/GasProbe.sol";
import {MockAggregator} from "../../contracts/mocks/MockAggregator.sol";
import {MockERC20} from "../../contracts/mocks/MockERC20.sol";
import {
    RiskParams,
    OracleConfig,
    Order,
    Witness,
    WitnessKind,
    LiquidationPreview
} from "../../contracts/interfaces/IMarginTypes.sol";
import {GasParams} from "./utils/GasParams.sol";
import {Test, VM_ADDRESS, console} from "./utils/Test.sol";

/// @notice The cheatcodes the gas tests need beyond utils/Test.sol's.
interface VmGas {
    /// @dev gasTotalUsed of a call made under `forge test --isolate` is its transaction's gasUsed
    struct Gas {
        uint64 gasLimit;
        uint64 gasTotalUsed;
        uint64 gasMemoryUsed;
        int64 gasRefunded;
        uint64 gasRemaining;
    }

    function lastCallGas() external view returns (Gas memory);
    function deployCode(string calldata artifactPath, bytes calldata constructorArgs) external returns (address);
    function snapshotState() external returns (uint256);
    function revertToState(uint256 snapshotId) external returns (bool);
    function envOr(string calldata name, string calldata delim, uint256[] calldata defaultValue)
        external
        view
        returns (uint256[] memory);
}

/// @notice The stack and the books of the gas report (scripts/forge_gas.py): n assets priced $100, $200, ...
/// (tokens of 18, 8, 6 decimals in turn, mock feeds of 8), the risk parameters of GasParams, and
/// - a victim holding 10 units of collateral and a 10-unit perp long in every asset, cash = the sum of the
///   prices (its equity is mostly the collateral),
/// - a maker (1 unit of collateral in every asset, $100M cash) on the other side of every perp,
/// - a liquidator holding 1 unit of collateral and a 1-unit perp long in every asset, $100M cash,
/// - a fresh account holding $100M cash only.
/// Accounts are anvil's (ape's) test accounts 0 (admin, matcher, operator of the others), 1, 2, 3 and 5, and
/// orders carry nanosecond nonces as keeper.orders.fresh_nonce's: the calldata is what the keeper and the
/// simulator send to anvil (the same operations sent there through ape measured the same, +-36 gas: the
/// signatures' zero bytes).
abstract contract GasBench is Test {
    VmGas internal constant vmg = VmGas(VM_ADDRESS);
    uint256 internal constant WAD = 1e18;
    uint8 internal constant FEED_DECIMALS = 8;
    uint32 internal constant HEARTBEAT = 3600;
    uint64 internal constant NO_EXPIRY = type(uint64).max;

    uint256 internal constant ADMIN_KEY = 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80;
    uint256 internal constant MAKER_KEY = 0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d;
    uint256 internal constant VICTIM_KEY = 0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a;
    uint256 internal constant LIQUIDATOR_KEY = 0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6;
    uint256 internal constant FRESH_KEY = 0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba;

    address internal admin = vm.addr(ADMIN_KEY);
    address internal maker = vm.addr(MAKER_KEY);
    address internal victim = vm.addr(VICTIM_KEY);
    address internal liquidator = vm.addr(LIQUIDATOR_KEY);
    address internal fresh = vm.addr(FRESH_KEY);

    MarginAccount internal margin;
    MarginLens internal lens;
    MockERC20 internal quote;
    GasProbe internal probe;
    MockERC20[] internal tokens;
    MockAggregator[] internal feeds;
    uint64 internal nonce = 1_733_000_000_000_000_000;

    // ------------------------------------------------------------------ the stack and the books

    function _priceUsd(uint256 asset) internal pure returns (uint256) {
        return 100 * (asset + 1);
    }

    function _deployStack(uint256 n, uint256 s) internal {
        vm.warp(1_733_000_000);
        delete tokens;
        delete feeds;
        uint8[3] memory decimals = [18, 8, 6];
        RiskParams memory p = GasParams.params(n);
        vm.startPrank(admin);
        quote = new MockERC20("USD Coin", "USDC", 6);
        // from the compiled artifacts, not `new`: the test contracts do not carry (and via-IR does not
        // compile into them) the core's creation code
        margin = MarginAccount(
            vmg.deployCode("contracts/MarginAccount.sol:MarginAccount", abi.encode(quote, admin, 1 days))
        );
        lens = MarginLens(vmg.deployCode("contracts/periphery/MarginLens.sol:MarginLens", abi.encode(margin)));
        for (uint256 i; i < n; ++i) {
            string memory symbol = string.concat("A", _u(i));
            tokens.push(new MockERC20(symbol, symbol, decimals[i % 3]));
            feeds.push(new MockAggregator(FEED_DECIMALS, int256(_priceUsd(i) * 10 ** FEED_DECIMALS)));
            margin.listAsset(address(tokens[i]));
            p.oracles[i] =
                OracleConfig(address(feeds[i]), HEARTBEAT, FEED_DECIMALS, 1, int256(1e9 * 10 ** FEED_DECIMALS) - 1);
        }
        margin.grantRole(margin.RISK_ADMIN_ROLE(), admin);
        margin.grantRole(margin.MATCHER_ROLE(), admin);
        margin.grantRole(margin.FUNDING_ROLE(), admin);
        margin.proposeRiskParams(p, GasParams.shocks(n, s)); // the first parameters take effect at once
        margin.setOperator(admin, true);
        probe = new GasProbe();
        vm.stopPrank();
    }

    function _openBooks() internal {
        uint256 n = tokens.length;
        address[3] memory authorising = [maker, victim, liquidator];
        for (uint256 k; k < 3; ++k) {
            vm.prank(authorising[k]);
            margin.setOperator(admin, true);
        }
        uint256 priceSum;
        for (uint256 i; i < n; ++i) {
            priceSum += _priceUsd(i);
        }
        _fundCash(maker, 100_000_000);
        _fundCash(liquidator, 100_000_000);
        _fundCash(fresh, 100_000_000);
        _fundCash(victim, priceSum);
        for (uint256 i; i < n; ++i) {
            _fundCollateral(victim, i, 10);
            _fundCollateral(maker, i, 1);
            _trade(victim, maker, i, 10, ADMIN_KEY, ADMIN_KEY);
            _fundCollateral(liquidator, i, 1);
            _trade(liquidator, maker, i, 1, ADMIN_KEY, ADMIN_KEY);
        }
    }

    /// @notice Lowers every price 1% of its start at a time until the lens calls the victim liquidatable.
    function _priceDownToLiquidation() internal returns (LiquidationPreview memory pv) {
        for (uint256 step = 1; step < 70; ++step) {
            for (uint256 i; i < feeds.length; ++i) {
                vm.prank(admin);
                feeds[i].setPrice(int256(_priceUsd(i) * (100 - step) * 10 ** (FEED_DECIMALS - 2)));
            }
            pv = lens.previewLiquidation(victim);
            if (pv.liquidatable) return pv;
        }
        revert("gas: the victim never became liquidatable");
    }

    function _fundCash(address account, uint256 usd) internal {
        uint256 amount = usd * 1e6;
        vm.startPrank(account);
        quote.mint(account, amount);
        quote.approve(address(margin), amount);
        margin.depositCash(account, amount);
        vm.stopPrank();
    }

    function _fundCollateral(address account, uint256 asset, uint256 units) internal {
        uint256 amount = units * 10 ** tokens[asset].decimals();
        vm.startPrank(account);
        tokens[asset].mint(account, amount);
        tokens[asset].approve(address(margin), amount);
        margin.depositCollateral(account, asset, amount);
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ the measured operations

    /// @notice gasUsed of the last call's transaction (under --isolate; its execution gas otherwise)
    function _lastGas() internal view returns (uint256) {
        return vmg.lastCallGas().gasTotalUsed;
    }

    /// @notice Execution gas of `data` called on the margin account by the probe, storage cold under --isolate.
    function _probe(bytes memory data) internal returns (uint256 used) {
        (used,,) = probe.measure(address(margin), data);
    }

    function _sign(Order memory o, uint256 key) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, margin.orders().orderDigest(o));
        return abi.encodePacked(r, s, v);
    }

    /// @notice `units` of `asset` at its start price, the buy order signed with `buyKey`, the sell with `sellKey`,
    /// settled by the admin (matcher); returns the transaction's gas.
    function _trade(address buyer, address seller, uint256 asset, uint256 units, uint256 buyKey, uint256 sellKey)
        internal
        returns (uint256)
    {
        uint256 size = units * WAD;
        uint256 price = _priceUsd(asset) * WAD;
        Order memory buy = Order(buyer, uint8(asset), int128(int256(size)), uint128(price), ++nonce, NO_EXPIRY);
        Order memory sell = Order(seller, uint8(asset), -int128(int256(size)), uint128(price), ++nonce, NO_EXPIRY);
        bytes memory buySig = _sign(buy, buyKey);
        bytes memory sellSig = _sign(sell, sellKey);
        vm.prank(admin);
        margin.settleTrade(buy, buySig, sell, sellSig, uint128(size), uint128(price));
        return _lastGas();
    }

    function _margin() internal returns (uint256) {
        return _probe(abi.encodeCall(margin.marginOf, (victim)));
    }

    function _witness() internal returns (uint256) {
        return _probe(abi.encodeCall(margin.liquidate, (victim, WAD, Witness(WitnessKind.VaR, 0))));
    }

    /// @notice the maker buys 1 unit of asset 0 from the victim, both orders signed by the admin (operator)
    function _tradeByOperator() internal returns (uint256) {
        return _trade(maker, victim, 0, 1, ADMIN_KEY, ADMIN_KEY);
    }

    /// @notice the same trade, each account signing its own order
    function _tradeOwnKeys() internal returns (uint256) {
        return _trade(maker, victim, 0, 1, MAKER_KEY, VICTIM_KEY);
    }

    /// @notice the victim withdraws $1 of cash
    function _withdraw() internal returns (uint256) {
        vm.prank(victim);
        margin.withdrawCash(1_000_000, victim);
        return _lastGas();
    }

    /// @notice `by` liquidates up to half the victim's book with the lens's witness
    function _liquidate(address by, Witness memory witness) internal returns (uint256 gas, uint256 taken) {
        vm.prank(by);
        taken = margin.liquidate(victim, WAD / 2, witness);
        gas = _lastGas();
    }
}

/// @notice The gas report's grid (`make gas`: scripts/forge_gas.py runs it with --isolate and collects the
/// `gas-row` lines). Without --isolate (as in `forge test`) the figures are not transaction gas: the calls
/// share one transaction and its warm storage; the test then checks only that every operation goes through.
contract GasReportTest is GasBench {
    function _row(string memory op, uint256 n, uint256 s, uint256 gas) internal pure returns (string memory) {
        return string.concat("gas-row ", op, " ", _u(n), " ", _u(s), " ", _u(gas));
    }

    function _report(uint256 n, uint256 s) internal {
        _deployStack(n, s);
        _openBooks();
        uint256 margin_ = _margin();
        uint256 witness = _witness();
        uint256 snap = vmg.snapshotState();
        uint256 ownKeys = _tradeOwnKeys();
        vmg.revertToState(snap);
        snap = vmg.snapshotState();
        uint256 trade = _tradeByOperator();
        uint256 withdraw = _withdraw();
        vmg.revertToState(snap); // the liquidation starts from the state before the trade and the withdrawal
        LiquidationPreview memory pv = _priceDownToLiquidation();
        snap = vmg.snapshotState();
        (uint256 intoEmpty,) = _liquidate(fresh, pv.witness);
        vmg.revertToState(snap);
        (uint256 liquidate, uint256 taken) = _liquidate(liquidator, pv.witness);
        assertGt(taken, 0, "nothing liquidated");
        console.log(_row("margin", n, s, margin_));
        console.log(_row("witness", n, s, witness));
        console.log(_row("trade", n, s, trade));
        console.log(_row("trade_own_keys", n, s, ownKeys));
        console.log(_row("withdraw", n, s, withdraw));
        console.log(string.concat(_row("liquidate", n, s, liquidate), " ", _u(intoEmpty), " ", _u(taken)));
    }

    /// @notice Every grid point in turn, each on a stack of its own: GAS_ASSETS and GAS_SCENARIOS
    /// (comma-separated) narrow the grid. One test, not one per point: via-IR would compile `_report` into each.
    function test_gas() external {
        uint256[] memory assets = new uint256[](4);
        (assets[0], assets[1], assets[2], assets[3]) = (1, 4, 8, 16);
        uint256[] memory scenarios = new uint256[](3);
        (scenarios[0], scenarios[1], scenarios[2]) = (8, 16, 32);
        assets = vmg.envOr("GAS_ASSETS", ",", assets);
        scenarios = vmg.envOr("GAS_SCENARIOS", ",", scenarios);
        for (uint256 a; a < assets.length; ++a) {
            for (uint256 k; k < scenarios.length; ++k) {
                _report(assets[a], scenarios[k]);
            }
        }
    }
}

/// @notice One test per operation at 8 assets / 16 scenarios, everything else in setUp: `forge snapshot`
/// records them in .gas-snapshot (`make gas`), `make gas-check` compares (each figure is the whole test
/// function's gas: the operation plus a small fixed overhead of the test itself).
contract GasSnapshotTest is GasBench {
    function setUp() public {
        _deployStack(8, 16);
        _openBooks();
    }

    function test_marginOf() external view {
        margin.marginOf(victim);
    }

    function test_witnessOfHealthyAccount() external {
        _witness();
    }

    function test_settleTrade() external {
        _tradeByOperator();
    }

    function test_settleTradeOwnKeys() external {
        _tradeOwnKeys();
    }

    function test_withdrawCash() external {
        _withdraw();
    }
}

/// @notice As GasSnapshotTest, the victim priced down to liquidation in setUp.
contract GasSnapshotLiquidationTest is GasBench {
    Witness internal witness;

    function setUp() public {
        _deployStack(8, 16);
        _openBooks();
        witness = _priceDownToLiquidation().witness;
    }

    function test_liquidate() external {
        _liquidate(liquidator, witness);
    }

    function test_liquidateIntoEmptyAccount() external {
        _liquidate(fresh, witness);
    }
}
