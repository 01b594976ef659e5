//! till-bench: the harness every Till benchmark shares.
//!
//! A Till benchmark is a `harness = false` bench target with a `main` that
//! builds a realistic data set, times the product's verbs and reports. This
//! crate holds what they all need and nothing else:
//!
//! - [`Args`]: `--quick` picks the small [`Scale`]; the `--bench` flag cargo
//!   passes is ignored, so `cargo bench -p CRATE --bench NAME -- --quick` works;
//! - [`Samples`]: durations recorded one per operation, summarised as
//!   median, p99 and max (nearest-rank, see [`Summary`]); benchmarks quote
//!   medians and tails, never means;
//! - [`CpuWait`]: on Linux, how long the thread waited for a CPU during a
//!   sample, so a tail made by other processes on a shared machine can be
//!   told from one made by the code ([`Samples::time_on`]), and
//!   [`load_average`] and [`reference_work`], how busy and how fast the
//!   machine was while the figures were taken;
//! - [`Report`]: named figures with their unit and target, printed as a table
//!   and written as one flat JSON object (`figure name -> number`, plus the
//!   `scale.*` parameters used) to `target/bench/NAME.json`, where `target`
//!   is `CARGO_TARGET_DIR` when set, else the target folder the benchmark was
//!   built in (see [`target_dir`]); [`Report::latency`] adds the usual
//!   median / p99 figures of one operation.
//!
//! ```
//! use std::time::Duration;
//! use till_bench::{Args, Report, Samples, Target};
//!
//! let args = Args::parse(["--bench", "--quick"]).expect("arguments");
//! let customers = args.scale().pick(20_000, 1_000_000);
//! let mut lookups = Samples::new();
//! for _ in 0..100 {
//!     lookups.time(|| std::hint::black_box(customers * 2));
//! }
//! lookups.record(Duration::from_micros(3));
//! let summary = lookups.summary().expect("samples");
//! let mut report = Report::new("example", args.scale());
//! report.scale_param("customers", customers as f64);
//! report.figure("example.lookup_p99_us", summary.p99_us(), "us", Some(Target::AtMost(50.0)));
//! assert!(report.to_json().contains("\"scale.customers\": 20000"));
//! ```
//!
//! No dependencies, on purpose: every bench target links it, and a flat
//! object of numbers needs no serializer.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which size of data set a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// `--quick`: sized to finish in about two minutes on a 2-core machine.
    Quick,
    /// The default: the sizes the product's targets are stated at.
    Full,
}

impl Scale {
    /// `quick` at [`Scale::Quick`], `full` at [`Scale::Full`].
    pub fn pick<T>(self, quick: T, full: T) -> T {
        match self {
            Scale::Quick => quick,
            Scale::Full => full,
        }
    }

    /// `quick` or `full`.
    pub fn name(self) -> &'static str {
        self.pick("quick", "full")
    }
}

/// The command line of a benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `--quick` was given.
    pub quick: bool,
}

impl Args {
    /// Parses the process's arguments; prints usage and exits on `--help`
    /// or an unknown argument.
    pub fn from_env() -> Args {
        match Args::parse(std::env::args().skip(1)) {
            Ok(args) => args,
            Err(message) => {
                if !message.is_empty() {
                    eprintln!("{message}");
                }
                eprintln!("usage: cargo bench -p CRATE --bench NAME [-- --quick]");
                std::process::exit(if message.is_empty() { 0 } else { 2 });
            }
        }
    }

    /// Parses arguments (without the program name). `--bench`, which cargo
    /// passes to every bench target, is accepted and ignored. An error
    /// carries the message to print; it is empty for `--help`.
    pub fn parse<I, S>(args: I) -> Result<Args, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Args { quick: false };
        for arg in args {
            match arg.as_ref() {
                "--quick" => parsed.quick = true,
                "--bench" => {}
                "--help" | "-h" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(parsed)
    }

    /// The scale these arguments ask for.
    pub fn scale(&self) -> Scale {
        if self.quick {
            Scale::Quick
        } else {
            Scale::Full
        }
    }
}

/// Durations of one kind of operation, one per call.
///
/// Samples timed with [`Samples::time_on`] (or recorded with
/// [`Samples::record_observed`]) also remember how long the thread waited,
/// runnable, for a CPU during the call: on a shared machine that wait, not
/// the code under test, makes most of a tail, and [`Samples::summary_minus_cpu_wait`]
/// takes it out.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    durations: Vec<Duration>,
    /// For observed samples: the duration minus the CPU wait.
    minus_wait: Vec<Duration>,
    /// Observed samples that waited for a CPU at all.
    waited: usize,
}

impl Samples {
    /// No samples yet.
    pub fn new() -> Samples {
        Samples::default()
    }

    /// Room for `n` samples, so recording never reallocates mid-measurement.
    pub fn with_capacity(n: usize) -> Samples {
        Samples {
            durations: Vec::with_capacity(n),
            minus_wait: Vec::with_capacity(n),
            waited: 0,
        }
    }

    /// Records one duration.
    pub fn record(&mut self, d: Duration) {
        self.durations.push(d);
    }

    /// Records one duration and the CPU wait observed during it (`None`
    /// when it could not be observed: the sample then counts as [`Samples::record`]).
    pub fn record_observed(&mut self, d: Duration, cpu_wait: Option<Duration>) {
        self.durations.push(d);
        if let Some(wait) = cpu_wait {
            self.minus_wait.push(d.saturating_sub(wait));
            if !wait.is_zero() {
                self.waited += 1;
            }
        }
    }

    /// Runs `f`, records how long it took and returns what it returned.
    pub fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let value = f();
        self.record(start.elapsed());
        value
    }

    /// Like [`Samples::time`], also observing the CPU wait through `cpu`
    /// (which must belong to the calling thread). The two reads of `cpu`
    /// sit outside the timed span.
    pub fn time_on<T>(&mut self, cpu: &CpuWait, f: impl FnOnce() -> T) -> T {
        let before = cpu.total();
        let start = Instant::now();
        let value = f();
        let took = start.elapsed();
        let wait = before.zip(cpu.total()).map(|(b, a)| a.saturating_sub(b));
        self.record_observed(took, wait);
        value
    }

    /// How many durations were recorded.
    pub fn len(&self) -> usize {
        self.durations.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.durations.is_empty()
    }

    /// The sum of every recorded duration.
    pub fn total(&self) -> Duration {
        self.durations.iter().sum()
    }

    /// Median, p99 and max; `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        summarise(&self.durations)
    }

    /// The summary of the observed samples with the time each spent waiting
    /// for a CPU taken out: what the same run would show on a quiet
    /// machine. `None` when no sample was observed.
    pub fn summary_minus_cpu_wait(&self) -> Option<Summary> {
        summarise(&self.minus_wait)
    }

    /// The share (0 to 1) of observed samples that waited for a CPU at all.
    pub fn cpu_wait_share(&self) -> Option<f64> {
        (!self.minus_wait.is_empty()).then(|| self.waited as f64 / self.minus_wait.len() as f64)
    }
}

fn summarise(durations: &[Duration]) -> Option<Summary> {
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let max = *sorted.last()?;
    Some(Summary {
        count: sorted.len(),
        median: nearest_rank(&sorted, 50),
        p99: nearest_rank(&sorted, 99),
        max,
    })
}

/// How long the thread that opened it has waited, runnable, for a CPU:
/// the second field of Linux's `/proc/thread-self/schedstat`. Where that
/// file does not exist every reading is `None`. Read it only from the
/// thread that opened it.
#[derive(Debug)]
pub struct CpuWait {
    file: Option<std::fs::File>,
}

impl CpuWait {
    /// Opens the calling thread's scheduler statistics.
    pub fn open() -> CpuWait {
        let file = std::fs::File::open("/proc/thread-self/schedstat").ok();
        let cpu = CpuWait { file };
        match cpu.total() {
            Some(_) => cpu,
            None => CpuWait { file: None },
        }
    }

    /// The thread's total wait so far.
    pub fn total(&self) -> Option<Duration> {
        let file = self.file.as_ref()?;
        let mut buf = [0u8; 128];
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(file, &mut buf, 0).ok()?;
        #[cfg(not(unix))]
        let n = {
            let _ = (file, &mut buf);
            0
        };
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let nanos: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
        Some(Duration::from_nanos(nanos))
    }
}

/// How long a fixed, CPU-bound piece of work takes here now (the median of
/// 15 runs of about 0.4 ms on a 2.5 GHz core). It grows when the
/// machine is slower or shared: recorded at the start and end of a run, it
/// tells a slow run from a slow machine.
pub fn reference_work() -> Duration {
    let mut runs = Samples::with_capacity(15);
    for seed in 0..15u64 {
        runs.time(|| {
            let mut x = seed | 1;
            for _ in 0..200_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            std::hint::black_box(x)
        });
    }
    runs.summary().map_or(Duration::ZERO, |s| s.median)
}

/// The 1-minute load average of the machine (Linux `/proc/loadavg`), to
/// record how busy it was while a benchmark ran.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `percent`th percentile of sorted, non-empty `sorted` by the
/// nearest-rank method: the smallest sample at least `percent`% of the
/// samples are less than or equal to. Always a sample that was measured,
/// never an interpolation.
fn nearest_rank(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// What a set of [`Samples`] comes to. Percentiles are nearest-rank: with
/// 100 samples the p99 is the 99th smallest, with fewer than 100 it is the max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Samples summarised.
    pub count: usize,
    /// Half the samples took at most this long.
    pub median: Duration,
    /// 99% of the samples took at most this long.
    pub p99: Duration,
    /// The slowest sample.
    pub max: Duration,
}

impl Summary {
    /// The median in microseconds.
    pub fn median_us(&self) -> f64 {
        micros(self.median)
    }

    /// The p99 in microseconds.
    pub fn p99_us(&self) -> f64 {
        micros(self.p99)
    }

    /// The max in microseconds.
    pub fn max_us(&self) -> f64 {
        micros(self.max)
    }
}

/// `d` in (fractional) microseconds.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What a figure must stay within.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The figure must be at most this (latencies, ratios, sizes).
    AtMost(f64),
    /// The figure must be at least this (throughputs).
    AtLeast(f64),
}

impl Target {
    /// Whether `value` keeps this target.
    pub fn is_met(self, value: f64) -> bool {
        match self {
            Target::AtMost(limit) => value <= limit,
            Target::AtLeast(limit) => value >= limit,
        }
    }

    fn describe(self) -> String {
        match self {
            Target::AtMost(limit) => format!("<= {}", format_value(limit)),
            Target::AtLeast(limit) => format!(">= {}", format_value(limit)),
        }
    }
}

/// One reported number.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Name in the table and the JSON, e.g. `store.customer_summary_p99_us`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Unit shown in the table (the name carries it in the JSON).
    pub unit: String,
    /// What the value must keep, if the project states a target.
    pub target: Option<Target>,
}

impl Figure {
    /// False only when a target is stated and missed.
    pub fn is_ok(&self) -> bool {
        self.target.is_none_or(|t| t.is_met(self.value))
    }
}

/// The figures of one benchmark run.
#[derive(Debug, Clone)]
pub struct Report {
    name: String,
    scale: Scale,
    params: Vec<(String, f64)>,
    figures: Vec<Figure>,
}

impl Report {
    /// An empty report for the benchmark `name` (also its JSON file's name).
    pub fn new(name: &str, scale: Scale) -> Report {
        Report {
            name: name.into(),
            scale,
            params: Vec::new(),
            figures: Vec::new(),
        }
    }

    /// Records a parameter of the data set, written as `scale.NAME`.
    pub fn scale_param(&mut self, name: &str, value: f64) {
        self.params.push((format!("scale.{name}"), value));
    }

    /// Adds a figure; a figure of the same name is replaced.
    pub fn figure(&mut self, name: &str, value: f64, unit: &str, target: Option<Target>) {
        let figure = Figure {
            name: name.into(),
            value,
            unit: unit.into(),
            target,
        };
        match self.figures.iter_mut().find(|f| f.name == name) {
            Some(existing) => *existing = figure,
            None => self.figures.push(figure),
        }
    }

    /// How busy and how fast the machine is `when` (`start`, `end`):
    /// `machine.load_1m_at_WHEN` and `machine.reference_work_us_at_WHEN`.
    /// On a shared machine they tell a slow run from a slow product.
    pub fn machine(&mut self, when: &str) {
        let load = load_average().unwrap_or(f64::NAN);
        self.figure(&format!("machine.load_1m_at_{when}"), load, "", None);
        self.figure(
            &format!("machine.reference_work_us_at_{when}"),
            micros(reference_work()),
            "us",
            None,
        );
    }

    /// The figures of one latency: `NAME_median_us`, `NAME_p99_us` (held to
    /// `p99_target`), and when the CPU wait was observed,
    /// `NAME_p99_us_minus_cpu_wait` and `NAME_cpu_wait_pct` (the share of
    /// calls that waited for a CPU). Returns the summary; `None` (and no
    /// figures) without samples.
    pub fn latency(
        &mut self,
        name: &str,
        samples: &Samples,
        p99_target: Option<Target>,
    ) -> Option<Summary> {
        let summary = samples.summary()?;
        self.figure(
            &format!("{name}_median_us"),
            summary.median_us(),
            "us",
            None,
        );
        self.figure(
            &format!("{name}_p99_us"),
            summary.p99_us(),
            "us",
            p99_target,
        );
        if let (Some(quiet), Some(share)) =
            (samples.summary_minus_cpu_wait(), samples.cpu_wait_share())
        {
            self.figure(
                &format!("{name}_p99_us_minus_cpu_wait"),
                quiet.p99_us(),
                "us",
                None,
            );
            self.figure(&format!("{name}_cpu_wait_pct"), share * 100.0, "%", None);
        }
        Some(summary)
    }

    /// The figures, in the order they were added.
    pub fn figures(&self) -> &[Figure] {
        &self.figures
    }

    /// The figures whose stated target was missed.
    pub fn missed(&self) -> Vec<&Figure> {
        self.figures.iter().filter(|f| !f.is_ok()).collect()
    }

    /// The figures and parameters as an aligned text table.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.name.clone(),
                    format_value(f.value),
                    f.unit.clone(),
                    f.target.map(Target::describe).unwrap_or_default(),
                    match f.target {
                        None => String::new(),
                        Some(_) if f.is_ok() => "ok".into(),
                        Some(_) => "MISSED".into(),
                    },
                ]
            })
            .chain(self.params.iter().map(|(name, value)| {
                [
                    name.clone(),
                    format_value(*value),
                    String::new(),
                    String::new(),
                    String::new(),
                ]
            }))
            .collect();
        let header = ["figure", "value", "unit", "target", ""].map(String::from);
        let mut widths = [0usize; 5];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let lines: Vec<String> = std::iter::once(&header)
            .chain(&rows)
            .map(|row| {
                format!(
                    "{:<w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {}",
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2],
                    w3 = widths[3],
                )
                .trim_end()
                .to_owned()
            })
            .collect();
        let rule = "-".repeat(lines.iter().map(|l| l.chars().count()).max().unwrap_or(0));
        let mut out = format!("{} ({} scale)\n", self.name, self.scale.name());
        for (i, line) in lines.iter().enumerate() {
            out.push_str(line);
            out.push('\n');
            if i == 0 {
                out.push_str(&rule);
                out.push('\n');
            }
        }
        out
    }

    /// Prints [`Report::table`] to stdout.
    pub fn print_table(&self) {
        print!("{}", self.table());
    }

    /// The flat JSON object: every figure, then `scale.quick` (1 or 0) and
    /// the scale parameters. A value that is not finite is written as `null`.
    pub fn to_json(&self) -> String {
        let quick = if self.scale == Scale::Quick { 1.0 } else { 0.0 };
        let entries: Vec<(&str, f64)> = self
            .figures
            .iter()
            .map(|f| (f.name.as_str(), f.value))
            .chain(std::iter::once(("scale.quick", quick)))
            .chain(self.params.iter().map(|(n, v)| (n.as_str(), *v)))
            .collect();
        let mut out = String::from("{\n");
        for (i, (name, value)) in entries.iter().enumerate() {
            let sep = if i + 1 < entries.len() { "," } else { "" };
            let value = if value.is_finite() {
                // Display for f64 never uses exponents: always valid JSON.
                format!("{value}")
            } else {
                "null".into()
            };
            let _ = writeln!(out, "  {}: {value}{sep}", json_string(name));
        }
        out.push_str("}\n");
        out
    }

    /// Writes [`Report::to_json`] to `bench/NAME.json` under [`target_dir`].
    pub fn write_json(&self) -> std::io::Result<PathBuf> {
        self.write_json_in(&target_dir())
    }

    /// Writes [`Report::to_json`] to `bench/NAME.json` under `target`,
    /// creating the folder; the file is replaced whole, never half-written.
    pub fn write_json_in(&self, target: &Path) -> std::io::Result<PathBuf> {
        let dir = target.join("bench");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", self.name));
        let partial = dir.join(format!(".{}.json.partial", self.name));
        std::fs::write(&partial, self.to_json())?;
        std::fs::rename(&partial, &path)?;
        Ok(path)
    }
}

/// The cargo target folder reports go under: `CARGO_TARGET_DIR` when set;
/// else the nearest folder above the running executable that holds cargo's
/// `CACHEDIR.TAG` (the target folder the bench was built in, which is the
/// workspace's `target/` unless configured otherwise); else `./target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// A data set kept under `target/bench/<name>/` between runs, built by
/// `build` the first time. It is built in a sibling `.partial` folder and
/// renamed into place only when `build` returns, so a run interrupted half
/// way through building is never mistaken for a finished data set.
pub fn cached_data(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    cached_data_in(&target_dir().join("bench"), name, build)
}

fn cached_data_in(bench: &Path, name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let done = bench.join(name);
    if done.is_dir() {
        return done;
    }
    let partial = bench.join(format!(".{name}.partial"));
    // Leftovers of an interrupted build are incomplete by definition.
    if partial.exists() {
        std::fs::remove_dir_all(&partial).expect("remove an interrupted data set");
    }
    std::fs::create_dir_all(&partial).expect("create the data set folder");
    build(&partial);
    std::fs::rename(&partial, &done).expect("move the finished data set into place");
    done
}

/// A number for the table: three significant-looking digits without noise.
fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if !value.is_finite() {
        format!("{value}")
    } else if magnitude >= 1000.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 100.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_accept_what_cargo_passes_and_refuse_the_rest() {
        assert_eq!(
            Args::parse(["--bench"]).expect("bench"),
            Args { quick: false }
        );
        let quick = Args::parse(["--bench", "--quick"]).expect("quick");
        assert_eq!(quick.scale(), Scale::Quick);
        assert_eq!(
            Args::parse(Vec::<String>::new()).expect("none").scale(),
            Scale::Full
        );
        assert!(Args::parse(["--quik"])
            .expect_err("typo")
            .contains("--quik"));
        assert_eq!(Args::parse(["--help"]), Err(String::new()));
    }

    #[test]
    fn a_data_set_is_reused_only_once_its_build_finished() {
        let bench = tempfile::tempdir().expect("temp");
        let interrupted = std::panic::catch_unwind(|| {
            cached_data_in(bench.path(), "set", |dir| {
                std::fs::write(dir.join("half"), "x").expect("write");
                panic!("interrupted");
            })
        });
        assert!(interrupted.is_err());
        assert!(!bench.path().join("set").exists());

        let mut builds = 0;
        let dir = cached_data_in(bench.path(), "set", |dir| {
            builds += 1;
            std::fs::write(dir.join("whole"), "x").expect("write");
        });
        assert_eq!(dir, bench.path().join("set"));
        assert!(dir.join("whole").exists() && !dir.join("half").exists());
        cached_data_in(bench.path(), "set", |_| builds += 1);
        assert_eq!(builds, 1, "a finished data set is not built again");
    }

    #[test]
    fn scale_picks_its_side() {
        assert_eq!(Scale::Quick.pick(1, 2), 1);
        assert_eq!(Scale::Full.pick(1, 2), 2);
        assert_eq!(Scale::Full.name(), "full");
    }

    #[test]
    fn percentiles_are_nearest_rank_samples() {
        let mut s = Samples::new();
        assert!(s.summary().is_none());
        // 1..=200 us, recorded out of order.
        for us in (1..=200u64).rev() {
            s.record(Duration::from_micros(us));
        }
        let sum = s.summary().expect("summary");
        assert_eq!(sum.count, 200);
        assert_eq!(sum.median, Duration::from_micros(100));
        assert_eq!(sum.p99, Duration::from_micros(198));
        assert_eq!(sum.max, Duration::from_micros(200));
        assert_eq!(sum.p99_us(), 198.0);
        assert_eq!(s.total(), Duration::from_micros(200 * 201 / 2));

        let mut one = Samples::new();
        one.record(Duration::from_millis(2));
        let sum = one.summary().expect("one");
        assert_eq!((sum.median, sum.p99, sum.max), (sum.max, sum.max, sum.max));

        // Below 100 samples the p99 is the max: no tail is invented.
        let mut few = Samples::new();
        for us in [5, 1, 9, 3] {
            few.record(Duration::from_micros(us));
        }
        let sum = few.summary().expect("few");
        assert_eq!(sum.median, Duration::from_micros(3));
        assert_eq!(sum.p99, Duration::from_micros(9));
    }

    #[test]
    fn observed_samples_can_take_the_cpu_wait_out() {
        let mut s = Samples::new();
        assert_eq!(s.cpu_wait_share(), None);
        for us in 1..=100u64 {
            // Every tenth call waited 1 ms for a CPU.
            let wait = if us % 10 == 0 { 1_000 } else { 0 };
            s.record_observed(
                Duration::from_micros(us + wait),
                Some(Duration::from_micros(wait)),
            );
        }
        s.record(Duration::from_micros(5)); // not observed
        assert_eq!(s.len(), 101);
        let all = s.summary().expect("all");
        assert!(all.p99 > Duration::from_millis(1));
        let quiet = s.summary_minus_cpu_wait().expect("quiet");
        assert_eq!(quiet.count, 100);
        assert_eq!(quiet.p99, Duration::from_micros(99));
        assert_eq!(s.cpu_wait_share(), Some(0.1));

        let mut r = Report::new("t", Scale::Quick);
        r.latency("t.op", &s, Some(Target::AtMost(50.0)));
        let names: Vec<&str> = r.figures().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "t.op_median_us",
                "t.op_p99_us",
                "t.op_p99_us_minus_cpu_wait",
                "t.op_cpu_wait_pct"
            ]
        );
        assert_eq!(r.missed().len(), 1);
        assert!(r.latency("t.none", &Samples::new(), None).is_none());
    }

    #[test]
    fn cpu_wait_reads_this_threads_scheduler_statistics() {
        let cpu = CpuWait::open();
        if cfg!(target_os = "linux") {
            let before = cpu.total().expect("schedstat on Linux");
            let mut s = Samples::new();
            s.time_on(&cpu, || std::hint::black_box((0..10_000u64).sum::<u64>()));
            assert!(cpu.total().expect("again") >= before);
            assert_eq!(s.summary_minus_cpu_wait().map(|q| q.count), Some(1));
            assert!(load_average().is_some_and(|l| l >= 0.0));
            assert!(reference_work() > Duration::ZERO);
        }
    }

    #[test]
    fn time_records_and_passes_the_value_through() {
        let mut s = Samples::with_capacity(1);
        let v = s.time(|| {
            std::thread::sleep(Duration::from_millis(2));
            7
        });
        assert_eq!(v, 7);
        assert_eq!(s.len(), 1);
        assert!(s.total() >= Duration::from_millis(2));
    }

    #[test]
    fn targets_judge_figures() {
        assert!(Target::AtMost(2.0).is_met(2.0));
        assert!(!Target::AtMost(2.0).is_met(2.01));
        assert!(Target::AtLeast(10.0).is_met(11.0));
        let mut r = Report::new("t", Scale::Quick);
        r.figure("a.ratio", 2.5, "x", Some(Target::AtMost(2.0)));
        r.figure("a.size_mb", 3.0, "MB", None);
        r.figure("a.p99_us", 40.0, "us", Some(Target::AtMost(50.0)));
        let missed: Vec<&str> = r.missed().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(missed, ["a.ratio"]);
        r.figure("a.ratio", 1.5, "x", Some(Target::AtMost(2.0)));
        assert!(
            r.missed().is_empty(),
            "a figure is replaced, not duplicated"
        );
        assert_eq!(r.figures().len(), 3);
    }

    #[test]
    fn the_table_shows_every_figure_target_and_verdict() {
        let mut r = Report::new("store", Scale::Quick);
        r.figure("store.ratio", 2.5, "x", Some(Target::AtMost(2.0)));
        r.figure("store.p99_us", 41.234, "us", Some(Target::AtMost(50.0)));
        r.scale_param("customers", 20_000.0);
        let table = r.table();
        assert!(table.starts_with("store (quick scale)\n"), "{table}");
        assert!(table.contains("store.ratio"), "{table}");
        let ratio = table.lines().find(|l| l.starts_with("store.ratio"));
        assert!(
            ratio.is_some_and(|l| l.contains("<= 2") && l.ends_with("MISSED")),
            "{table}"
        );
        let p99 = table.lines().find(|l| l.starts_with("store.p99_us"));
        assert!(p99.is_some_and(|l| l.ends_with("ok")), "{table}");
        assert!(table.contains("41.23"), "{table}");
        assert!(table.contains("scale.customers  20000"), "{table}");
    }

    #[test]
    fn json_is_one_flat_object_of_numbers() {
        let mut r = Report::new("store", Scale::Full);
        r.figure("store.bills_per_s", 1234.5, "bills/s", None);
        r.figure("store.weird \"name\"\n", f64::NAN, "", None);
        r.scale_param("customers", 1_000_000.0);
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&r.to_json()).expect("valid JSON");
        assert_eq!(parsed["store.bills_per_s"], 1234.5);
        assert_eq!(parsed["scale.customers"], 1_000_000);
        assert_eq!(parsed["scale.quick"], 0);
        assert!(parsed["store.weird \"name\"\n"].is_null());
        assert_eq!(parsed.len(), 4);
    }

    #[test]
    fn json_lands_in_target_bench() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Report::new("store", Scale::Quick);
        r.figure("store.x", 1.0, "", None);
        let path = r.write_json_in(dir.path()).expect("write");
        assert_eq!(path, dir.path().join("bench").join("store.json"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, r.to_json());
        // Rewriting replaces the file and leaves nothing else behind.
        r.write_json_in(dir.path()).expect("rewrite");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("bench"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["store.json"]);
    }

    #[test]
    fn the_target_folder_is_the_one_cargo_built_in() {
        // Under `cargo test` CARGO_TARGET_DIR may or may not be set; either
        // way the answer holds cargo's cache tag.
        assert!(
            target_dir().join("CACHEDIR.TAG").is_file(),
            "{:?}",
            target_dir()
        );
    }

    #[test]
    fn values_print_with_sensible_precision() {
        assert_eq!(format_value(20_000.0), "20000");
        assert_eq!(format_value(1234.56), "1235");
        assert_eq!(format_value(123.456), "123.5");
        assert_eq!(format_value(1.834), "1.83");
        assert_eq!(format_value(0.1234), "0.123");
    }
}
