//! What a compute unit costs this provider, and the lowest price it will take for one.
//!
//! The model: the machine draws `W` watts, electricity costs `E` base units per kWh, the
//! hardware is written off at `A` base units per hour, and one compute unit (one second of
//! one core, DESIGN.md) occupies a share `s` of the machine for a second. Then
//!
//! ```text
//! break_even = ⌈ s · (W·E / 3.6·10⁶ + A / 3600) ⌉    base units per CU
//! floor      = ⌈ break_even · (1 + margin) ⌉
//! ask        = max(strategy price, floor)
//! ```
//!
//! All of it is integer arithmetic on base units, milliwatts and parts per million, with
//! 128-bit intermediates and every division rounded up, so the floor never undercuts the
//! cost it stands for. The pure part is [`CostInputs`], [`floor_price`] and [`ask_price`].
//!
//! Where `W` comes from ([`PowerMeter`], the only I/O here, given a sysfs root so it can
//! be pointed at a test tree):
//!
//! 1. `--watts` (or `AGORA_PROVIDER_WATTS`), when the operator set it: a wall meter sees
//!    what no sensor inside the machine does (the power supply's losses, fans, disks).
//! 2. RAPL energy counters, `class/powercap/*-rapl:N/energy_uj` (top-level packages only;
//!    their sub-zones are parts of the package and would be counted twice), differenced
//!    between two reads and corrected for wrap-around with `max_energy_range_uj`. Intel
//!    and AMD CPUs both expose this interface. Since Linux 5.10 these files are readable by
//!    root only, so an unprivileged agent usually falls through to the next source.
//! 3. hwmon power sensors, `class/hwmon/hwmon*/power*_input` (µW, instantaneous), then
//!    hwmon energy counters `energy*_input` (µJ, differenced like RAPL).
//! 4. An estimate of [`ESTIMATED_MILLIWATTS_PER_CORE`] per core, labelled as one.
//!
//! What none of them sees: RAPL covers the CPU package and (on some parts) DRAM, not the
//! rest of the machine; hwmon covers whatever the board vendor wired up. A measured figure
//! is a lower bound on the wall power; the operator's `--watts` is the honest fix.

use std::path::{Path, PathBuf};

use agora_core::{Amount, Price};
use serde::{Deserialize, Serialize};

/// Parts per million.
pub const PPM: u64 = 1_000_000;
/// Basis points in one whole (100 %).
pub const BPS: u64 = 10_000;
/// Milliwatt-seconds (mJ) per kWh, times 10³ for milliwatts: `W·E/3.6·10⁶` with `W` in mW
/// and the share in ppm becomes `mW·E·ppm / 3.6·10¹⁵`.
const MW_PPM_PER_KWH_SECOND: u128 = 3_600_000_000_000_000;
/// Seconds per hour, times the ppm and mW scales that [`MW_PPM_PER_KWH_SECOND`] carries.
const AMORTIZATION_SCALE: u128 = 1_000_000;
/// The estimate used when nothing is measured or configured: 10 W per core, a modern
/// server core under load including its share of memory and uncore.
pub const ESTIMATED_MILLIWATTS_PER_CORE: u64 = 10_000;
/// Electricity by default: 0.15 AGR per kWh (the dashboard's reference takes 1 AGR ≈ 1 US$).
pub const DEFAULT_ELECTRICITY_PER_KWH: Amount = Amount(150_000_000);
/// The operator's margin over break-even by default: 20 %.
pub const DEFAULT_MARGIN_BPS: u32 = 2_000;
/// The largest margin accepted: 100× break-even. More is a typo, not a strategy.
pub const MAX_MARGIN_BPS: u32 = 1_000_000;
/// The most power a figure may claim: 1 MW. More is a typo or a broken sensor.
pub const MAX_MILLIWATTS: u64 = 1_000_000_000;
/// The shortest interval two counter reads are differenced over: shorter ones are noise.
pub const MIN_SAMPLE_MS: u64 = 1_000;

/// The inputs of the break-even price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostInputs {
    /// The machine's power draw, milliwatts.
    pub milliwatts: u64,
    /// Electricity, base units per kWh.
    pub electricity_per_kwh: Amount,
    /// Hardware write-off, base units per hour of the whole machine.
    pub amortization_per_hour: Amount,
    /// The share of the machine one CU occupies for a second, ppm (10⁶ / cores).
    pub cu_share_ppm: u32,
}

impl CostInputs {
    /// What one CU costs the provider, rounded up; saturates rather than wraps.
    pub fn break_even(&self) -> Price {
        let share = u128::from(self.cu_share_ppm);
        let energy = u128::from(self.milliwatts) * u128::from(self.electricity_per_kwh.0);
        let hardware = u128::from(self.amortization_per_hour.0) * AMORTIZATION_SCALE;
        let per_cu = (share * (energy + hardware)).div_ceil(MW_PPM_PER_KWH_SECOND);
        Price(u64::try_from(per_cu).unwrap_or(u64::MAX))
    }
}

/// The share of a machine with `cores` cores that one CU (a core-second) occupies, ppm.
pub fn cu_share_ppm(cores: u32) -> u32 {
    u32::try_from(PPM / u64::from(cores.max(1))).unwrap_or(u32::MAX)
}

/// `break_even` raised by `margin_bps` basis points, rounded up.
pub fn floor_price(break_even: Price, margin_bps: u32) -> Price {
    let scaled = u128::from(break_even.0) * (u128::from(BPS) + u128::from(margin_bps));
    Price(u64::try_from(scaled.div_ceil(u128::from(BPS))).unwrap_or(u64::MAX))
}

/// The price to ask: the strategy's, but never under the floor.
pub fn ask_price(strategy: Price, floor: Price) -> Price {
    strategy.max(floor)
}

/// Energy used between two reads of a counter that wraps to 0 after `max_range_uj`
/// (RAPL's `max_energy_range_uj`). `None` when the counter went backwards and no range is
/// known (it was reset), or the reads are inconsistent with the range.
pub fn energy_delta_uj(before: u64, after: u64, max_range_uj: Option<u64>) -> Option<u64> {
    if after >= before {
        return Some(after - before);
    }
    let range = max_range_uj?;
    if before > range {
        return None;
    }
    // The counter ran from `before` up to `range`, wrapped to 0, then counted to `after`.
    (range - before).checked_add(after)?.checked_add(1)
}

/// Average power over `interval_ms` for `energy_uj` used: µJ per ms is exactly mW
/// (rounded up). `None` for an interval too short to mean anything.
pub fn average_milliwatts(energy_uj: u64, interval_ms: u64) -> Option<u64> {
    (interval_ms >= MIN_SAMPLE_MS).then(|| energy_uj.div_ceil(interval_ms))
}

/// Earnings per hour for `earned` over `uptime_ms`, rounded down; `None` before a minute
/// of uptime, when a rate would be mostly noise.
pub fn earnings_per_hour(earned: Amount, uptime_ms: u64) -> Option<Amount> {
    const HOUR_MS: u128 = 3_600_000;
    if uptime_ms < 60_000 {
        return None;
    }
    let rate = u128::from(earned.0) * HOUR_MS / u128::from(uptime_ms);
    Some(Amount(u64::try_from(rate).unwrap_or(u64::MAX)))
}

/// Why a cost setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    /// A watts figure that is not a positive number of watts.
    #[error(
        "{0:?} is not a power draw: give watts as a positive number up to 1000000 (e.g. --watts 95.5)"
    )]
    BadWatts(String),
    /// A margin that is not a number of basis points or percent.
    #[error(
        "{0:?} is not a margin: give basis points (e.g. 2000) or percent (e.g. 20%), at most 10000%"
    )]
    BadMargin(String),
}

/// Parses a watts figure (`95`, `95.5`, `95.5W`) into milliwatts, rounded up.
pub fn parse_watts(text: &str) -> Result<u64, CostError> {
    let bad = || CostError::BadWatts(text.to_string());
    let number = text.trim().trim_end_matches(['W', 'w']).trim();
    let watts: f64 = number.parse().map_err(|_| bad())?;
    if !watts.is_finite() || watts <= 0.0 {
        return Err(bad());
    }
    let milliwatts = (watts * 1_000.0).ceil();
    if milliwatts > MAX_MILLIWATTS as f64 {
        return Err(bad());
    }
    Ok(milliwatts as u64)
}

/// Parses a margin: basis points (`2000`) or percent (`20%`, `2.5%`), rounded up to a
/// whole basis point.
pub fn parse_margin_bps(text: &str) -> Result<u32, CostError> {
    let bad = || CostError::BadMargin(text.to_string());
    let text = text.trim();
    let bps = match text.strip_suffix('%') {
        Some(percent) => {
            let percent: f64 = percent.trim().parse().map_err(|_| bad())?;
            if !percent.is_finite() || percent < 0.0 {
                return Err(bad());
            }
            (percent * 100.0).ceil()
        }
        None => text.parse::<u32>().map_err(|_| bad())? as f64,
    };
    if bps > f64::from(MAX_MARGIN_BPS) {
        return Err(bad());
    }
    Ok(bps as u32)
}

/// What the operator set (flags, environment), with documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostConfig {
    /// The machine's power draw, milliwatts, if the operator gave one; it takes
    /// precedence over any sensor.
    pub milliwatts: Option<u64>,
    /// Electricity, base units per kWh.
    pub electricity_per_kwh: Amount,
    /// Hardware write-off, base units per hour.
    pub amortization_per_hour: Amount,
    /// Margin over break-even, basis points.
    pub margin_bps: u32,
    /// Where sysfs is mounted (`/sys`); tests point it at a tree of their own.
    pub sysfs: PathBuf,
}

impl Default for CostConfig {
    fn default() -> CostConfig {
        CostConfig {
            milliwatts: None,
            electricity_per_kwh: DEFAULT_ELECTRICITY_PER_KWH,
            amortization_per_hour: Amount::ZERO,
            margin_bps: DEFAULT_MARGIN_BPS,
            sysfs: PathBuf::from("/sys"),
        }
    }
}

/// Where the power figure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    /// `--watts`, `AGORA_PROVIDER_WATTS`.
    Configured,
    /// RAPL energy counters (powercap).
    Rapl,
    /// hwmon power sensors.
    HwmonPower,
    /// hwmon energy counters.
    HwmonEnergy,
    /// Nothing measured or configured: the per-core estimate.
    Estimated,
}

impl std::fmt::Display for PowerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerSource::Configured => "configured",
            PowerSource::Rapl => "rapl",
            PowerSource::HwmonPower => "hwmon power",
            PowerSource::HwmonEnergy => "hwmon energy",
            PowerSource::Estimated => "estimated",
        })
    }
}

/// One energy counter file and the value at which it wraps, if known.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Counter {
    energy: PathBuf,
    max_range_uj: Option<u64>,
}

/// The sensor a [`PowerMeter`] reads.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sensor {
    /// Energy counters, summed and differenced between reads.
    Energy(PowerSource, Vec<Counter>),
    /// Instantaneous power inputs in µW, summed.
    Power(Vec<PathBuf>),
    /// Nothing readable.
    None,
}

/// The last read of a set of energy counters.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EnergyRead {
    at_ms: u64,
    values: Vec<u64>,
}

/// Reads the host's power draw from sysfs, if it exposes one this process may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PowerMeter {
    sensor: Sensor,
    last: Option<EnergyRead>,
    /// The last average computed, milliwatts.
    latest_mw: Option<u64>,
    /// Why nothing is measured, when nothing is.
    note: String,
}

impl PowerMeter {
    /// Finds the first readable sensor under `sysfs` (RAPL, then hwmon power, then hwmon
    /// energy) and takes a first read at `now_ms`.
    pub fn probe(sysfs: &Path, now_ms: u64) -> PowerMeter {
        let rapl = rapl_counters(sysfs);
        let (sensor, note) = if !rapl.is_empty() {
            (Sensor::Energy(PowerSource::Rapl, rapl), String::new())
        } else if let Some(inputs) = hwmon_power_inputs(sysfs) {
            (Sensor::Power(inputs), String::new())
        } else if let Some(counters) = hwmon_energy_counters(sysfs) {
            (
                Sensor::Energy(PowerSource::HwmonEnergy, counters),
                String::new(),
            )
        } else {
            (
                Sensor::None,
                format!(
                    "no readable RAPL ({}/class/powercap) or hwmon ({}/class/hwmon) power sensor",
                    sysfs.display(),
                    sysfs.display()
                ),
            )
        };
        let mut meter = PowerMeter {
            sensor,
            last: None,
            latest_mw: None,
            note,
        };
        meter.sample(now_ms);
        meter
    }

    /// The sensor's kind, if there is one.
    pub fn source(&self) -> Option<PowerSource> {
        match &self.sensor {
            Sensor::Energy(source, _) => Some(*source),
            Sensor::Power(_) => Some(PowerSource::HwmonPower),
            Sensor::None => None,
        }
    }

    /// Reads the sensor at `now_ms` and returns the latest average power: for counters,
    /// over the interval since the previous read (kept until [`MIN_SAMPLE_MS`] passed); for
    /// power inputs, the instantaneous sum. `None` until there is a figure, or when the
    /// sensor stopped answering (the reason is in [`PowerMeter::note`]).
    pub fn sample(&mut self, now_ms: u64) -> Option<u64> {
        match &self.sensor {
            Sensor::None => {}
            Sensor::Power(inputs) => match sum_files(inputs) {
                Ok(microwatts) => {
                    self.latest_mw = Some(microwatts.div_ceil(1_000));
                    self.note.clear();
                }
                Err(why) => self.lost(why),
            },
            Sensor::Energy(_, counters) => match read_counters(counters) {
                Ok(values) => self.difference(values, now_ms),
                Err(why) => self.lost(why),
            },
        }
        self.latest_mw
    }

    /// Why nothing is measured (empty when something is).
    pub fn note(&self) -> &str {
        &self.note
    }

    fn lost(&mut self, why: String) {
        self.latest_mw = None;
        self.last = None;
        self.note = why;
    }

    fn difference(&mut self, values: Vec<u64>, now_ms: u64) {
        let Sensor::Energy(_, counters) = &self.sensor else {
            return;
        };
        let Some(last) = &self.last else {
            self.last = Some(EnergyRead {
                at_ms: now_ms,
                values,
            });
            self.note = "sampling: the first figure comes after a second read".into();
            return;
        };
        let interval = now_ms.saturating_sub(last.at_ms);
        if interval < MIN_SAMPLE_MS {
            return;
        }
        let delta = last.values.iter().zip(&values).zip(counters).try_fold(
            0u64,
            |sum, ((&before, &after), counter)| {
                sum.checked_add(energy_delta_uj(before, after, counter.max_range_uj)?)
            },
        );
        match delta.and_then(|uj| average_milliwatts(uj, interval)) {
            Some(mw) if mw <= MAX_MILLIWATTS => {
                self.latest_mw = Some(mw);
                self.note.clear();
            }
            _ => self.note = "a counter was reset between reads; keeping the last figure".into(),
        }
        self.last = Some(EnergyRead {
            at_ms: now_ms,
            values,
        });
    }
}

/// Top-level RAPL zones (`intel-rapl:0`, not `intel-rapl:0:0`) whose counter reads.
fn rapl_counters(sysfs: &Path) -> Vec<Counter> {
    let mut zones: Vec<PathBuf> = list_dir(&sysfs.join("class/powercap"))
        .into_iter()
        .filter(|path| {
            file_name(path).is_some_and(|name| {
                name.split_once(':').is_some_and(|(kind, zone)| {
                    kind.ends_with("rapl")
                        && !zone.is_empty()
                        && zone.bytes().all(|b| b.is_ascii_digit())
                })
            })
        })
        .collect();
    zones.sort();
    let counters: Vec<Counter> = zones
        .iter()
        .map(|zone| Counter {
            energy: zone.join("energy_uj"),
            max_range_uj: read_u64(&zone.join("max_energy_range_uj")).ok(),
        })
        .collect();
    if read_counters(&counters).is_ok() {
        counters
    } else {
        Vec::new()
    }
}

/// Every `power*_input` file of every hwmon device, if at least one exists and all read.
fn hwmon_power_inputs(sysfs: &Path) -> Option<Vec<PathBuf>> {
    let inputs = hwmon_files(sysfs, "power");
    (!inputs.is_empty() && sum_files(&inputs).is_ok()).then_some(inputs)
}

/// Every `energy*_input` counter of every hwmon device, if at least one exists and all read.
fn hwmon_energy_counters(sysfs: &Path) -> Option<Vec<Counter>> {
    let counters: Vec<Counter> = hwmon_files(sysfs, "energy")
        .into_iter()
        .map(|energy| Counter {
            energy,
            max_range_uj: None,
        })
        .collect();
    (!counters.is_empty() && read_counters(&counters).is_ok()).then_some(counters)
}

/// `class/hwmon/hwmon*/{prefix}N_input`, sorted.
fn hwmon_files(sysfs: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = list_dir(&sysfs.join("class/hwmon"))
        .iter()
        .flat_map(|device| list_dir(device))
        .filter(|path| {
            file_name(path).is_some_and(|name| {
                name.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix("_input"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .collect();
    files.sort();
    files
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

fn read_counters(counters: &[Counter]) -> Result<Vec<u64>, String> {
    counters.iter().map(|c| read_u64(&c.energy)).collect()
}

fn sum_files(files: &[PathBuf]) -> Result<u64, String> {
    files.iter().try_fold(0u64, |sum, path| {
        sum.checked_add(read_u64(path)?)
            .ok_or_else(|| format!("{} overflows", path.display()))
    })
}

fn read_u64(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| format!("{} holds {:?}, not a counter", path.display(), text.trim()))
}

/// The cost model as the agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostStatus {
    /// Where the power figure came from.
    pub power_source: PowerSource,
    /// The power figure, milliwatts.
    pub milliwatts: u64,
    /// Why a sensor is not used, when none is (empty otherwise).
    pub power_note: String,
    /// Electricity, base units per kWh.
    pub electricity_per_kwh: Amount,
    /// Hardware write-off, base units per hour.
    pub amortization_per_hour: Amount,
    /// The share of the machine one CU occupies, ppm.
    pub cu_share_ppm: u32,
    /// What one CU costs.
    pub break_even: Price,
    /// The margin over break-even, basis points.
    pub margin_bps: u32,
    /// The least the agent asks or bids: break-even plus the margin.
    pub floor: Price,
}

/// The agent's cost model: the configuration, the meter, and the figures last computed.
#[derive(Clone, Debug)]
pub struct CostModel {
    config: CostConfig,
    meter: PowerMeter,
    cores: u32,
    status: CostStatus,
}

impl CostModel {
    /// The model for a machine with `cores` cores, probing its sensors at `now_ms`.
    pub fn new(config: CostConfig, cores: u32, now_ms: u64) -> CostModel {
        let meter = PowerMeter::probe(&config.sysfs, now_ms);
        let mut model = CostModel {
            status: figures(&config, cores, None, &meter),
            config,
            meter,
            cores,
        };
        model.refresh(now_ms);
        model
    }

    /// Reads the sensor again and recomputes break-even and floor.
    pub fn refresh(&mut self, now_ms: u64) -> &CostStatus {
        let measured = if self.config.milliwatts.is_none() {
            self.meter.sample(now_ms)
        } else {
            None
        };
        self.status = figures(&self.config, self.cores, measured, &self.meter);
        &self.status
    }

    /// The least the agent asks or bids for one CPU CU now.
    pub fn floor(&self) -> Price {
        self.status.floor
    }

    /// The figures last computed.
    pub fn status(&self) -> &CostStatus {
        &self.status
    }
}

/// The figures for `config` with `measured` power (if any), pure.
fn figures(
    config: &CostConfig,
    cores: u32,
    measured: Option<u64>,
    meter: &PowerMeter,
) -> CostStatus {
    let (power_source, milliwatts, power_note) = match (config.milliwatts, measured) {
        (Some(mw), _) => (PowerSource::Configured, mw, String::new()),
        (None, Some(mw)) => (
            meter.source().unwrap_or(PowerSource::Estimated),
            mw,
            String::new(),
        ),
        (None, None) => (
            PowerSource::Estimated,
            ESTIMATED_MILLIWATTS_PER_CORE.saturating_mul(u64::from(cores.max(1))),
            format!(
                "{}; assuming {} W per core (set --watts)",
                meter.note(),
                ESTIMATED_MILLIWATTS_PER_CORE / 1_000
            ),
        ),
    };
    let inputs = CostInputs {
        milliwatts,
        electricity_per_kwh: config.electricity_per_kwh,
        amortization_per_hour: config.amortization_per_hour,
        cu_share_ppm: cu_share_ppm(cores),
    };
    let break_even = inputs.break_even();
    CostStatus {
        power_source,
        milliwatts,
        power_note,
        electricity_per_kwh: config.electricity_per_kwh,
        amortization_per_hour: config.amortization_per_hour,
        cu_share_ppm: inputs.cu_share_ppm,
        break_even,
        margin_bps: config.margin_bps,
        floor: floor_price(break_even, config.margin_bps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs(milliwatts: u64, kwh: u64, amort: u64, cores: u32) -> CostInputs {
        CostInputs {
            milliwatts,
            electricity_per_kwh: Amount(kwh),
            amortization_per_hour: Amount(amort),
            cu_share_ppm: cu_share_ppm(cores),
        }
    }

    #[test]
    fn break_even_of_a_known_machine() {
        // 100 W, 8 cores, 0.15 AGR/kWh: a core-second uses 12.5 J = 3.47e-6 kWh,
        // 520.8 base units, rounded up.
        assert_eq!(inputs(100_000, 150_000_000, 0, 8).break_even(), Price(521));
        // 1 AGR/h of hardware on 4 cores: 10⁹ / 3600 / 4 = 69 444.4 per CU.
        assert_eq!(inputs(0, 0, 1_000_000_000, 4).break_even(), Price(69_445));
        // Both add up, rounded once: 520.83 + 34 722.22 = 35 243.06.
        assert_eq!(
            inputs(100_000, 150_000_000, 1_000_000_000, 8).break_even(),
            Price(35_244)
        );
        assert_eq!(inputs(0, 0, 0, 8).break_even(), Price(0));
    }

    #[test]
    fn floor_adds_the_margin_rounded_up() {
        assert_eq!(floor_price(Price(521), 2_000), Price(626));
        assert_eq!(floor_price(Price(1_000), 0), Price(1_000));
        assert_eq!(floor_price(Price(u64::MAX), 10_000), Price(u64::MAX));
        assert_eq!(ask_price(Price(5), Price(626)), Price(626));
        assert_eq!(ask_price(Price(20_000_000), Price(626)), Price(20_000_000));
    }

    #[test]
    fn counters_wrap_around_their_range() {
        assert_eq!(energy_delta_uj(100, 350, None), Some(250));
        // 990 → wrap at 1000 → 9: 10 to reach 1000, 1 to reach 0, 9 more.
        assert_eq!(energy_delta_uj(990, 9, Some(1_000)), Some(20));
        assert_eq!(energy_delta_uj(990, 9, None), None);
        assert_eq!(energy_delta_uj(2_000, 9, Some(1_000)), None);
        assert_eq!(average_milliwatts(50_000_000, 1_000), Some(50_000));
        assert_eq!(average_milliwatts(1, 999), None);
        assert_eq!(average_milliwatts(1_001, 1_000), Some(2));
    }

    #[test]
    fn settings_parse_or_say_what_is_wrong() {
        assert_eq!(parse_watts("95.5"), Ok(95_500));
        assert_eq!(parse_watts("120W"), Ok(120_000));
        assert_eq!(parse_watts("0.0001"), Ok(1));
        for bad in ["", "0", "-3", "nan", "inf", "lots", "2000000"] {
            assert!(
                matches!(parse_watts(bad), Err(CostError::BadWatts(_))),
                "{bad}"
            );
        }
        assert_eq!(parse_margin_bps("2000"), Ok(2_000));
        assert_eq!(parse_margin_bps("20%"), Ok(2_000));
        assert_eq!(parse_margin_bps("2.5%"), Ok(250));
        for bad in ["-1%", "x", "10001%", "1000001", "nan%"] {
            assert!(
                matches!(parse_margin_bps(bad), Err(CostError::BadMargin(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn earnings_per_hour_needs_a_minute() {
        assert_eq!(earnings_per_hour(Amount(100), 59_999), None);
        assert_eq!(earnings_per_hour(Amount(100), 1_800_000), Some(Amount(200)));
    }

    /// A sysfs tree in a temporary directory, written file by file.
    struct FakeSys(tempfile::TempDir);

    impl FakeSys {
        fn new() -> FakeSys {
            FakeSys(tempfile::tempdir().unwrap())
        }
        fn write(&self, path: &str, text: &str) {
            let path = self.0.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        fn root(&self) -> &Path {
            self.0.path()
        }
    }

    #[test]
    fn rapl_packages_are_differenced_and_sub_zones_ignored() {
        let sys = FakeSys::new();
        for package in ["intel-rapl:0", "intel-rapl:1"] {
            sys.write(&format!("class/powercap/{package}/energy_uj"), "1000000\n");
            sys.write(
                &format!("class/powercap/{package}/max_energy_range_uj"),
                "262143328850\n",
            );
        }
        // A sub-zone (core or dram) would double-count the package it belongs to.
        sys.write("class/powercap/intel-rapl:0:0/energy_uj", "999999999");
        sys.write("class/powercap/intel-rapl/enabled", "1");
        let mut meter = PowerMeter::probe(sys.root(), 10_000);
        assert_eq!(meter.source(), Some(PowerSource::Rapl));
        assert_eq!(meter.sample(10_000), None, "one read is no rate");
        sys.write("class/powercap/intel-rapl:0/energy_uj", "31000000");
        sys.write("class/powercap/intel-rapl:1/energy_uj", "21000000");
        // 30 J + 20 J over 2 s = 25 W.
        assert_eq!(meter.sample(12_000), Some(25_000));
        assert!(meter.note().is_empty());
    }

    #[test]
    fn a_rapl_counter_that_wraps_is_corrected() {
        let sys = FakeSys::new();
        sys.write("class/powercap/intel-rapl:0/energy_uj", "999000000");
        sys.write(
            "class/powercap/intel-rapl:0/max_energy_range_uj",
            "999999999",
        );
        let mut meter = PowerMeter::probe(sys.root(), 0);
        sys.write("class/powercap/intel-rapl:0/energy_uj", "8999999");
        // 999 999 999 − 999 000 000 + 1 + 8 999 999 = 10 000 000 µJ over 1 s: 10 W.
        assert_eq!(meter.sample(1_000), Some(10_000));
    }

    #[test]
    fn an_amd_host_reads_the_same_interface() {
        let sys = FakeSys::new();
        sys.write("class/powercap/amd-rapl:0/energy_uj", "5");
        let meter = PowerMeter::probe(sys.root(), 0);
        assert_eq!(meter.source(), Some(PowerSource::Rapl));
    }

    #[test]
    fn hwmon_power_inputs_are_summed_in_microwatts() {
        let sys = FakeSys::new();
        sys.write("class/hwmon/hwmon0/power1_input", "41500000\n");
        sys.write("class/hwmon/hwmon3/power2_input", "8500001\n");
        sys.write("class/hwmon/hwmon3/power2_label", "PPT\n");
        sys.write("class/hwmon/hwmon3/temp1_input", "45000\n");
        let mut meter = PowerMeter::probe(sys.root(), 0);
        assert_eq!(meter.source(), Some(PowerSource::HwmonPower));
        assert_eq!(meter.sample(5), Some(50_001));
    }

    #[test]
    fn hwmon_energy_counters_are_differenced() {
        let sys = FakeSys::new();
        sys.write("class/hwmon/hwmon1/energy1_input", "100");
        let mut meter = PowerMeter::probe(sys.root(), 0);
        assert_eq!(meter.source(), Some(PowerSource::HwmonEnergy));
        sys.write("class/hwmon/hwmon1/energy1_input", "4000100");
        assert_eq!(meter.sample(2_000), Some(2_000));
        // A counter reset (no known range) keeps the last figure and says why.
        sys.write("class/hwmon/hwmon1/energy1_input", "7");
        assert_eq!(meter.sample(4_000), Some(2_000));
        assert!(meter.note().contains("reset"), "{}", meter.note());
    }

    #[test]
    fn unreadable_or_garbled_sensors_fall_through() {
        let sys = FakeSys::new();
        // A RAPL counter that holds garbage (the same path as a root-only file).
        sys.write("class/powercap/intel-rapl:0/energy_uj", "not a number");
        // A RAPL zone without a counter at all.
        std::fs::create_dir_all(sys.root().join("class/powercap/intel-rapl:1")).unwrap();
        sys.write("class/hwmon/hwmon0/power1_input", "12000000");
        let meter = PowerMeter::probe(sys.root(), 0);
        assert_eq!(meter.source(), Some(PowerSource::HwmonPower));

        let empty = FakeSys::new();
        let meter = PowerMeter::probe(empty.root(), 0);
        assert_eq!(meter.source(), None);
        assert!(
            meter.note().contains("no readable RAPL"),
            "{}",
            meter.note()
        );
    }

    #[test]
    fn a_sensor_that_disappears_is_reported() {
        let sys = FakeSys::new();
        sys.write("class/hwmon/hwmon0/power1_input", "12000000");
        let mut meter = PowerMeter::probe(sys.root(), 0);
        std::fs::remove_file(sys.root().join("class/hwmon/hwmon0/power1_input")).unwrap();
        assert_eq!(meter.sample(1), None);
        assert!(meter.note().contains("cannot read"), "{}", meter.note());
    }

    #[test]
    fn the_model_prefers_configured_then_measured_then_estimated() {
        let sys = FakeSys::new();
        sys.write("class/hwmon/hwmon0/power1_input", "80000000");
        let base = CostConfig {
            sysfs: sys.root().to_path_buf(),
            ..CostConfig::default()
        };
        let measured = CostModel::new(base.clone(), 8, 0);
        assert_eq!(measured.status().power_source, PowerSource::HwmonPower);
        assert_eq!(measured.status().milliwatts, 80_000);
        let configured = CostModel::new(
            CostConfig {
                milliwatts: Some(200_000),
                ..base.clone()
            },
            8,
            0,
        );
        assert_eq!(configured.status().power_source, PowerSource::Configured);
        assert!(configured.floor() > measured.floor());
        let nothing = FakeSys::new();
        let estimated = CostModel::new(
            CostConfig {
                sysfs: nothing.root().to_path_buf(),
                ..base
            },
            8,
            0,
        );
        let status = estimated.status();
        assert_eq!(status.power_source, PowerSource::Estimated);
        assert_eq!(status.milliwatts, 80_000);
        assert!(
            status.power_note.contains("--watts"),
            "{}",
            status.power_note
        );
        assert_eq!(
            status.floor,
            floor_price(status.break_even, DEFAULT_MARGIN_BPS)
        );
    }

    proptest! {
        #[test]
        fn floor_covers_break_even_and_grows_with_everything(
            mw in 0u64..MAX_MILLIWATTS,
            kwh in 0u64..10_000_000_000,
            amort in 0u64..100_000_000_000,
            cores in 1u32..1024,
            margin in 0u32..MAX_MARGIN_BPS,
            extra in 1u64..1_000_000,
        ) {
            let base = inputs(mw, kwh, amort, cores);
            let be = base.break_even();
            let floor = floor_price(be, margin);
            prop_assert!(floor >= be);
            // Exact: the floor is never below the true cost with the margin.
            prop_assert!(u128::from(floor.0) * 10_000 >= u128::from(be.0) * (10_000 + u128::from(margin)));
            prop_assert!(inputs(mw + extra, kwh, amort, cores).break_even() >= be);
            prop_assert!(inputs(mw, kwh + extra, amort, cores).break_even() >= be);
            prop_assert!(inputs(mw, kwh, amort + extra, cores).break_even() >= be);
            prop_assert!(inputs(mw, kwh, amort, cores + 1).break_even() <= be);
            // Rounded up, and by less than one base unit.
            let exact = u128::from(base.cu_share_ppm)
                * (u128::from(mw) * u128::from(kwh) + u128::from(amort) * AMORTIZATION_SCALE);
            prop_assert!(u128::from(be.0) * MW_PPM_PER_KWH_SECOND >= exact);
            prop_assert!(u128::from(be.0) * MW_PPM_PER_KWH_SECOND < exact + MW_PPM_PER_KWH_SECOND);
        }

        #[test]
        fn wrapped_deltas_are_what_the_counter_ran(range in 1u64..u64::MAX / 2, before_frac in 0u64..1_000, ran in 0u64..1_000_000) {
            prop_assume!(ran <= range);
            let before = range / 1_000 * before_frac;
            let after = (before as u128 + ran as u128) % (range as u128 + 1);
            prop_assert_eq!(energy_delta_uj(before, after as u64, Some(range)), Some(ran));
        }
    }
}
