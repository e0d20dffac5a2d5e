//! Function-graph calls rebuilt from a recording: who called whom, when, for how long. The flame
//! graph and the Chrome JSON are drawn from these.

use crate::capture::Recording;
use crate::symtab::SymbolTable;
use crate::tracedat::display_name;
use formats::wire;

/// Names addresses the way the trace does.
pub struct Names {
    table: SymbolTable,
}

impl Names {
    pub fn new(rec: &Recording) -> Result<Self, String> {
        let table = SymbolTable::parse(&rec.symtab).map_err(|e| format!("the recording's symbol table: {e}"))?;
        Ok(Names { table })
    }

    /// The function containing `addr` (without the kernel crate prefix), or its address.
    pub fn name(&self, addr: u64) -> String {
        match self.table.lookup(addr) {
            Some((n, _, _)) => display_name(n),
            None => format!("{addr:#x}"),
        }
    }
}

/// One traced call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub cpu: usize,
    /// Function addresses from the outermost traced caller down to this call's function.
    pub stack: Vec<u64>,
    /// Start, nanoseconds.
    pub start: u64,
    /// Duration, nanoseconds.
    pub duration: u64,
    /// Time spent in traced callees, nanoseconds.
    pub in_children: u64,
    /// The call had not returned when the recording ended (its duration runs to the CPU's last
    /// event).
    pub unfinished: bool,
}

impl Call {
    /// Time spent in the function itself.
    pub fn self_time(&self) -> u64 {
        self.duration.saturating_sub(self.in_children)
    }
}

struct Open {
    func: u64,
    depth: u16,
    start: u64,
    in_children: u64,
}

/// Every call of a function_graph recording, in the order the calls returned on each CPU, CPU by
/// CPU. A return whose entry was overwritten still gives a call (its start is known from its
/// duration), with the callers that are still open as its stack.
pub fn calls(rec: &Recording) -> Vec<Call> {
    let mut out = Vec::new();
    for (cpu, c) in rec.cpus.iter().enumerate() {
        let mut open: Vec<Open> = Vec::new();
        // pending[d]: time of finished calls at depth d + 1 whose caller (at depth d) is not
        // open because its entry was overwritten; its return claims them.
        let mut pending: Vec<u64> = Vec::new();
        let mut last = 0;
        for r in &c.events {
            last = last.max(rec.ns(r.ts));
            match r.kind {
                wire::KIND_GRAPH_ENTRY => {
                    while open.last().is_some_and(|o| o.depth >= r.depth) {
                        open.pop();
                    }
                    if let Some(p) = pending.get_mut(r.depth as usize) {
                        *p = 0;
                    }
                    open.push(Open { func: r.ip, depth: r.depth, start: rec.ns(r.ts), in_children: 0 });
                }
                wire::KIND_GRAPH_RETURN => {
                    while open.last().is_some_and(|o| o.depth > r.depth) {
                        open.pop();
                    }
                    let end = rec.ns(r.ts);
                    let start = rec.ns(r.ts.saturating_sub(r.extra));
                    let d = r.depth as usize;
                    let in_children = match open.last() {
                        Some(o) if o.depth == r.depth && o.func == r.ip => open.pop().map_or(0, |o| o.in_children),
                        _ => pending.get_mut(d).map_or(0, std::mem::take),
                    };
                    let mut stack: Vec<u64> = open.iter().map(|o| o.func).collect();
                    stack.push(r.ip);
                    match open.last_mut() {
                        Some(parent) if parent.depth + 1 == r.depth => parent.in_children += end - start,
                        _ if d > 0 => {
                            if pending.len() < d {
                                pending.resize(d, 0);
                            }
                            pending[d - 1] += end - start;
                        }
                        _ => {}
                    }
                    out.push(Call { cpu, stack, start, duration: end - start, in_children, unfinished: false });
                }
                _ => {}
            }
        }
        // Calls still open at the end, innermost first (as they would have returned).
        while let Some(o) = open.pop() {
            let mut stack: Vec<u64> = open.iter().map(|p| p.func).collect();
            stack.push(o.func);
            let duration = last.saturating_sub(o.start);
            if let Some(parent) = open.last_mut() {
                parent.in_children += duration;
            }
            out.push(Call { cpu, stack, start: o.start, duration, in_children: o.in_children, unfinished: true });
        }
    }
    out
}

/// Folded stacks (`caller;callee;... self_time_ns`), one line per distinct stack, sorted; what
/// flame-graph tools read.
pub fn folded(rec: &Recording) -> Result<Vec<String>, String> {
    if !rec.is_graph() {
        return Err(format!("a flame graph needs a function_graph recording (this one is {})", rec.tracer));
    }
    let names = Names::new(rec)?;
    let mut sums: std::collections::BTreeMap<String, u64> = Default::default();
    for c in calls(rec) {
        let key = c.stack.iter().map(|&a| names.name(a).replace(';', ":")).collect::<Vec<_>>().join(";");
        *sums.entry(key).or_default() += c.self_time();
    }
    Ok(sums.into_iter().filter(|(_, v)| *v > 0).map(|(k, v)| format!("{k} {v}")).collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::capture::CpuTrace;
    use crate::symtab::{Symbol, encode};
    use formats::wire::Record;

    pub const ROOT: u64 = 0x9000_0000_0020_0000;
    pub const A: u64 = ROOT + 0x100;
    pub const B: u64 = ROOT + 0x200;
    pub const MARK: u64 = ROOT + 0x300;

    fn ev(kind: u8, ts: u64, ip: u64, depth: u16, extra: u64, cpu: u8) -> Record {
        Record { ts, ip, parent: 0, kind, cpu, depth, extra }
    }

    /// root { a { b(); } b(); } on cpu0 (100 MHz: 1 tick = 10 ns) with a `trace_marker` write
    /// between a and b (calls and flame graphs ignore it); on cpu1 the returns of b and its
    /// caller a whose entries were lost, then an entry that never returns.
    pub fn sample() -> Recording {
        use wire::{KIND_GRAPH_ENTRY as E, KIND_GRAPH_RETURN as R};
        let syms = vec![
            Symbol { addr: ROOT, size: 0x100, name: "loongtrace_kernel::root".into() },
            Symbol { addr: A, size: 0x100, name: "loongtrace_kernel::a".into() },
            Symbol { addr: B, size: 0x100, name: "loongtrace_kernel::b".into() },
            Symbol { addr: MARK, size: 0x100, name: "tracing_mark_write".into() },
        ];
        Recording {
            tracer: "function_graph".into(),
            counter_hz: 100_000_000,
            symtab: encode(&syms),
            cpus: vec![
                CpuTrace {
                    events: vec![
                        ev(E, 100, ROOT, 0, 0, 0),
                        ev(E, 110, A, 1, 0, 0),
                        ev(E, 120, B, 2, 0, 0),
                        ev(R, 125, B, 2, 5, 0),
                        ev(R, 140, A, 1, 30, 0),
                        ev(wire::KIND_MARKER, 145, MARK, 0, 1, 0),
                        ev(E, 150, B, 1, 0, 0),
                        ev(R, 154, B, 1, 4, 0),
                        ev(R, 200, ROOT, 0, 100, 0),
                    ],
                    lost: 0,
                    written: 9,
                },
                CpuTrace {
                    events: vec![
                        ev(R, 290, B, 1, 20, 1),
                        ev(R, 300, A, 0, 50, 1),
                        ev(E, 310, B, 0, 0, 1),
                        ev(E, 320, A, 1, 0, 1),
                        ev(R, 330, A, 1, 10, 1),
                    ],
                    lost: 3,
                    written: 8,
                },
            ],
            markers: [(1, "between a and b".to_string())].into(),
            formats: Vec::new(),
        }
    }

    #[test]
    fn calls_nest_and_time() {
        let cs = calls(&sample());
        let brief: Vec<(usize, Vec<u64>, u64, u64, u64, bool)> =
            cs.iter().map(|c| (c.cpu, c.stack.clone(), c.start, c.duration, c.self_time(), c.unfinished)).collect();
        assert_eq!(
            brief,
            vec![
                (0, vec![ROOT, A, B], 1200, 50, 50, false),
                (0, vec![ROOT, A], 1100, 300, 250, false),
                (0, vec![ROOT, B], 1500, 40, 40, false),
                (0, vec![ROOT], 1000, 1000, 660, false),
                (1, vec![B], 2700, 200, 200, false),
                (1, vec![A], 2500, 500, 300, false),
                (1, vec![B, A], 3200, 100, 100, false),
                (1, vec![B], 3100, 200, 100, true),
            ]
        );
    }

    #[test]
    fn folded_stacks() {
        assert_eq!(
            folded(&sample()).unwrap(),
            ["b 300", "b;a 100", "root 660", "root;a 250", "root;a;b 50", "root;b 40", "a 300"]
                .iter()
                .map(|s| s.to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        let mut f = sample();
        f.tracer = "function".into();
        assert!(folded(&f).unwrap_err().contains("function_graph"));
    }
}
