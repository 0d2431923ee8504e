//! What a benchmark measured ([`BenchReport`]: per runtime, per model, times and ratios) and its
//! table.

use super::*;

/// Median and quartiles of a sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Number of values.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// First quartile.
    pub p25: f64,
    /// Third quartile.
    pub p75: f64,
    /// Smallest value.
    pub min: f64,
}

impl Stats {
    /// Statistics of `v` (quantiles by linear interpolation, as numpy's default); NaN values
    /// are dropped.
    pub fn of(v: &[f64]) -> Stats {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        if s.is_empty() {
            return Stats {
                n: 0,
                median: f64::NAN,
                p25: f64::NAN,
                p75: f64::NAN,
                min: f64::NAN,
            };
        }
        let q = |p: f64| {
            let x = p * (s.len() - 1) as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            s[lo] + (s[hi] - s[lo]) * (x - lo as f64)
        };
        Stats {
            n: s.len(),
            median: q(0.5),
            p25: q(0.25),
            p75: q(0.75),
            min: s[0],
        }
    }
}

/// Time spent in one op type during profiled runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpTime {
    /// The op type (tract's op name or onnxruntime's `op_name`).
    pub op: String,
    /// Nodes of this type in the graph that ran.
    pub nodes: usize,
    /// Milliseconds per run, summed over those nodes.
    pub ms_per_run: f64,
}

/// One model's results in one runtime.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelResult {
    /// Its label.
    pub label: String,
    /// Its file.
    pub path: PathBuf,
    /// Time to load and prepare it, in ms.
    pub load_ms: f64,
    /// Statistics of the timed runs, in ms.
    pub ms: Stats,
    /// Every timed run, in ms, in round order.
    pub runs_ms: Vec<f64>,
    /// Statistics of the runs' process CPU time, in ms (None where it cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<Stats>,
    /// Every timed run's process CPU time, in ms (empty where it cannot be read).
    pub runs_cpu_ms: Vec<f64>,
    /// tract only, with `--ops`: op name → node count in the optimised model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<BTreeMap<String, usize>>,
    /// With `--profile`: time per op type, largest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Vec<OpTime>>,
}

/// A per-round statistic of one model relative to the baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Relative {
    /// The model's label.
    pub label: String,
    /// Statistics over rounds.
    pub stats: Stats,
}

/// Everything measured in one runtime.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuntimeResult {
    /// `onnxruntime` or `tract`.
    pub runtime: String,
    /// How it was configured.
    pub settings: String,
    /// One entry per model, in the order given.
    pub models: Vec<ModelResult>,
    /// `t_X / t_A` per round, for every model but A.
    pub ratios: Vec<Relative>,
    /// With a limit model: `(t_A − t_X)/(t_A − t_L)` per round, for the models in between.
    pub captured: Vec<Relative>,
    /// [`Self::ratios`] on CPU time.
    pub cpu_ratios: Vec<Relative>,
    /// [`Self::captured`] on CPU time.
    pub cpu_captured: Vec<Relative>,
}

/// The whole benchmark.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// The machine (CPU model, logical CPUs).
    pub machine: String,
    /// Timed rounds.
    pub runs: usize,
    /// Untimed rounds.
    pub warmup: usize,
    /// Input seed.
    pub seed: u64,
    /// The inputs fed to every model.
    pub inputs: Vec<InputSummary>,
    /// Per runtime.
    pub runtimes: Vec<RuntimeResult>,
    /// Remarks.
    pub notes: Vec<String>,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "machine: {}", self.machine)?;
        writeln!(
            f,
            "{} timed rounds after {} warm-up rounds, interleaved (rotating start); seed {}",
            self.runs, self.warmup, self.seed
        )?;
        let ins: Vec<String> = self
            .inputs
            .iter()
            .map(|i| format!("{} {}{:?} {}", i.name, i.dtype, i.shape, i.values))
            .collect();
        writeln!(f, "inputs: {}", ins.join("; "))?;
        for r in &self.runtimes {
            writeln!(f)?;
            writeln!(f, "== {} ({})", r.runtime, r.settings)?;
            let w = r
                .models
                .iter()
                .map(|m| m.label.len())
                .max()
                .unwrap_or(5)
                .max(5);
            let fmt_q =
                |s: &Stats, p: usize| format!("{:.p$} [{:.p$}, {:.p$}]", s.median, s.p25, s.p75);
            let kinds: [(&str, bool); 2] = [("wall", true), ("cpu", false)];
            for (kind, wall) in kinds {
                let stats: Vec<Option<&Stats>> = r
                    .models
                    .iter()
                    .map(|m| if wall { Some(&m.ms) } else { m.cpu_ms.as_ref() })
                    .collect();
                if stats.iter().any(Option::is_none) {
                    continue;
                }
                let (ratios, captured) = if wall {
                    (&r.ratios, &r.captured)
                } else {
                    (&r.cpu_ratios, &r.cpu_captured)
                };
                writeln!(
                    f,
                    "{:<w$}  {:>26}  {:>22}  {:>20}",
                    format!("[{kind}]"),
                    "median ms [p25, p75]",
                    "ratio vs A [p25, p75]",
                    "captured [p25, p75]"
                )?;
                for (k, m) in r.models.iter().enumerate() {
                    let ratio = match k {
                        0 => "A".to_string(),
                        _ => ratios
                            .get(k - 1)
                            .map(|x| fmt_q(&x.stats, 3))
                            .unwrap_or_default(),
                    };
                    let cap = captured
                        .iter()
                        .find(|c| c.label == m.label && k > 0 && k + 1 < r.models.len())
                        .map(|c| fmt_q(&c.stats, 2))
                        .unwrap_or_default();
                    let s = stats[k].expect("checked");
                    writeln!(
                        f,
                        "{:<w$}  {:>26}  {:>22}  {:>20}",
                        m.label,
                        fmt_q(s, 3),
                        ratio,
                        cap
                    )?;
                }
            }
            for m in &r.models {
                if let Some(ops) = &m.ops {
                    let mut v: Vec<(&String, &usize)> = ops.iter().collect();
                    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                    let s: Vec<String> = v.iter().map(|(k, n)| format!("{k}×{n}")).collect();
                    writeln!(f, "  ops {}: {}", m.label, s.join(" "))?;
                }
            }
            for m in &r.models {
                if let Some(p) = &m.profile {
                    let total: f64 = p.iter().map(|o| o.ms_per_run).sum();
                    writeln!(
                        f,
                        "  profile {} (total {:.3} ms/run in ops):",
                        m.label, total
                    )?;
                    for o in p.iter().take(14) {
                        writeln!(
                            f,
                            "    {:<36} {:>4} nodes {:>9.3} ms/run {:>5.1}%",
                            o.op,
                            o.nodes,
                            o.ms_per_run,
                            100.0 * o.ms_per_run / total.max(1e-12)
                        )?;
                    }
                }
            }
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}
