//! Chrome trace-event JSON (Perfetto UI, `chrome://tracing`): one track per CPU (its context's
//! task, `formats::task`: `tid` = PID, named `loongtrace/<cpu>`), function_graph
//! calls as complete (`X`) slices that nest by time, function-tracer events, `trace_marker`
//! writes and trace events (their fields as args) as instants.

use crate::calls::{self, Names};
use crate::capture::Recording;
use formats::{task, wire};
use serde_json::{Value, json};

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The JSON document for `rec`.
pub fn json(rec: &Recording) -> Result<String, String> {
    let names = Names::new(rec)?;
    let mut events: Vec<(usize, u64, u64, Value)> = Vec::new();
    if rec.is_graph() {
        for c in calls::calls(rec) {
            let func = *c.stack.last().expect("a call has a function");
            let mut ev = json!({
                "name": names.name(func),
                "cat": "function_graph",
                "ph": "X",
                "ts": us(c.start),
                "dur": us(c.duration),
                "pid": 0,
                "tid": task::pid(c.cpu as u32),
                "args": { "depth": c.stack.len() - 1 },
            });
            if c.unfinished {
                ev["args"]["unfinished"] = json!(true);
            }
            events.push((c.cpu, c.start, c.duration, ev));
        }
    } else {
        for (cpu, c) in rec.cpus.iter().enumerate() {
            for r in c.events.iter().filter(|r| r.kind == wire::KIND_FUNC) {
                let ts = rec.ns(r.ts);
                let ev = json!({
                    "name": names.name(r.ip),
                    "cat": "function",
                    "ph": "i",
                    "s": "t",
                    "ts": us(ts),
                    "pid": 0,
                    "tid": task::pid(cpu as u32),
                    "args": { "parent": names.name(r.parent) },
                });
                events.push((cpu, ts, 0, ev));
            }
        }
    }
    // trace_marker writes: instants on their CPU's track, named by their text.
    for (cpu, c) in rec.cpus.iter().enumerate() {
        for r in c.events.iter().filter(|r| r.kind == wire::KIND_MARKER) {
            let ts = rec.ns(r.ts);
            let text = rec.marker_text(r);
            let ev = json!({
                "name": text,
                "cat": "trace_marker",
                "ph": "i",
                "s": "t",
                "ts": us(ts),
                "pid": 0,
                "tid": task::pid(cpu as u32),
                "args": { "buf": text },
            });
            events.push((cpu, ts, 0, ev));
        }
    }
    // Trace events: instants named `system:event`, their fields as args.
    let formats = crate::events::by_id(&rec.formats);
    for (cpu, c) in rec.cpus.iter().enumerate() {
        for (i, id, bytes) in crate::events::records(&c.events) {
            let Some(f) = formats.get(&id) else { continue };
            let ts = rec.ns(c.events[i].ts);
            let mut args = serde_json::Map::new();
            for (name, v) in f.decode(&bytes) {
                let v = match v {
                    crate::events::Value::Unsigned(n) if name.starts_with("__probe") => json!(names.name(n)),
                    crate::events::Value::Unsigned(n) => json!(n),
                    crate::events::Value::Signed(n) => json!(n),
                    crate::events::Value::Str(s) => json!(s),
                    crate::events::Value::Bytes(b) => json!(b),
                };
                args.insert(name, v);
            }
            let ev = json!({
                "name": format!("{}:{}", f.system, f.name),
                "cat": f.system,
                "ph": "i",
                "s": "t",
                "ts": us(ts),
                "pid": 0,
                "tid": task::pid(cpu as u32),
                "args": Value::Object(args),
            });
            events.push((cpu, ts, 0, ev));
        }
    }
    // Per track in time order, an enclosing slice before the slices it contains (and before an
    // instant at its start).
    events.sort_by_key(|e| (e.0, e.1, std::cmp::Reverse(e.2)));
    let mut all = vec![json!({"name": "process_name", "ph": "M", "pid": 0, "args": {"name": "loongtrace"}})];
    for cpu in 0..rec.cpus.len() {
        let cpu = cpu as u32;
        all.push(json!({"name": "thread_name", "ph": "M", "pid": 0, "tid": task::pid(cpu), "args": {"name": task::Comm(cpu).to_string()}}));
    }
    all.extend(events.into_iter().map(|e| e.3));
    let doc = json!({ "traceEvents": all, "displayTimeUnit": "ns" });
    serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())
}

/// Checks a trace-event document the way a viewer relies on it: every event has a phase, name,
/// pid, tid and number timestamp; per track, timestamps never go backwards; `B`/`E` pairs match;
/// `X` slices have a non-negative duration and nest (a slice that starts inside another ends
/// inside it). Returns the number of events checked.
pub fn check(doc: &str) -> Result<usize, String> {
    let v: Value = serde_json::from_str(doc).map_err(|e| format!("not JSON: {e}"))?;
    let evs = v["traceEvents"].as_array().ok_or("no traceEvents array")?;
    // Per (pid, tid): last timestamp, open B events, ends of the open X slices.
    type Track = (f64, Vec<(String, f64)>, Vec<f64>);
    let mut tracks: std::collections::BTreeMap<(i64, i64), Track> = Default::default();
    for (i, e) in evs.iter().enumerate() {
        let ph = e["ph"].as_str().ok_or(format!("event {i} has no ph"))?;
        let name = e["name"].as_str().ok_or(format!("event {i} has no name"))?;
        if ph == "M" {
            continue;
        }
        let pid = e["pid"].as_i64().ok_or(format!("event {i} has no pid"))?;
        let tid = e["tid"].as_i64().ok_or(format!("event {i} has no tid"))?;
        let ts = e["ts"].as_f64().ok_or(format!("event {i} has no ts"))?;
        let (last, stack, ends) = tracks.entry((pid, tid)).or_insert((f64::MIN, Vec::new(), Vec::new()));
        if ts < *last {
            return Err(format!("event {i} ({name}) at {ts} goes back in time on track {pid}/{tid} (last {last})"));
        }
        *last = ts;
        // X slices that ended before this event closed.
        while ends.last().is_some_and(|&end| end <= ts) {
            ends.pop();
        }
        match ph {
            "B" => stack.push((name.to_string(), ts)),
            "E" => {
                let (open, _) = stack.pop().ok_or(format!("event {i}: E of {name} without B"))?;
                if open != name {
                    return Err(format!("event {i}: E of {name} closes B of {open}"));
                }
            }
            "X" => {
                let dur = e["dur"].as_f64().ok_or(format!("event {i}: X without dur"))?;
                if dur < 0.0 {
                    return Err(format!("event {i}: negative duration"));
                }
                let end = ts + dur;
                if ends.last().is_some_and(|&outer| end > outer + 1e-6) {
                    return Err(format!("event {i} ({name}) ends after the slice that contains it"));
                }
                ends.push(end);
            }
            "i" | "I" | "C" => {}
            other => return Err(format!("event {i}: unexpected phase {other}")),
        }
    }
    if let Some(((p, t), (_, stack, _))) = tracks.iter().find(|(_, (_, s, _))| !s.is_empty()) {
        return Err(format!("track {p}/{t}: B of {} never ended", stack[0].0));
    }
    Ok(evs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_json_is_valid_and_nested() {
        let doc = json(&crate::calls::tests::sample()).unwrap();
        assert_eq!(check(&doc).unwrap(), 3 + 8 + 1);
        let v: Value = serde_json::from_str(&doc).unwrap();
        let evs = v["traceEvents"].as_array().unwrap();
        let root = evs.iter().find(|e| e["name"] == "root").unwrap();
        assert_eq!((root["ts"].as_f64(), root["dur"].as_f64(), root["tid"].as_i64()), (Some(1.0), Some(1.0), Some(1)));
        // The two CPUs' tracks are their contexts' tasks: tid = PID, named loongtrace/<cpu>.
        let threads: Vec<(i64, &str)> = evs.iter().filter(|e| e["name"] == "thread_name").map(|e| (e["tid"].as_i64().unwrap(), e["args"]["name"].as_str().unwrap())).collect();
        assert_eq!(threads, [(1, "loongtrace/0"), (2, "loongtrace/1")]);
        let unfinished = evs.iter().filter(|e| e["args"]["unfinished"] == true).count();
        assert_eq!(unfinished, 1);
        // Track order: cpu0's root comes before its children; the marker between a and b.
        let names: Vec<&str> = evs.iter().skip(3).map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["root", "a", "b", "between a and b", "b", "a", "b", "b", "a"]);
        let m = &evs[6];
        assert_eq!((m["ph"].as_str(), m["s"].as_str(), m["cat"].as_str()), (Some("i"), Some("t"), Some("trace_marker")));
        assert_eq!((m["ts"].as_f64(), m["tid"].as_i64(), m["args"]["buf"].as_str()), (Some(1.45), Some(1), Some("between a and b")));
    }

    #[test]
    fn function_json_has_markers_as_instants() {
        let mut rec = crate::calls::tests::sample();
        rec.tracer = "function".into();
        for c in &mut rec.cpus {
            for r in &mut c.events {
                if r.kind != wire::KIND_MARKER {
                    r.kind = wire::KIND_FUNC;
                }
            }
        }
        let doc = json(&rec).unwrap();
        assert_eq!(check(&doc).unwrap(), 3 + 13 + 1);
        let v: Value = serde_json::from_str(&doc).unwrap();
        let marks: Vec<&Value> = v["traceEvents"].as_array().unwrap().iter().filter(|e| e["cat"] == "trace_marker").collect();
        assert_eq!(marks.len(), 1);
        assert_eq!((marks[0]["name"].as_str(), marks[0]["ph"].as_str()), (Some("between a and b"), Some("i")));
    }

    #[test]
    fn checker_rejects_bad_documents() {
        let ev = |ph: &str, name: &str, ts: f64, dur: f64| json!({"ph": ph, "name": name, "ts": ts, "dur": dur, "pid": 0, "tid": 0});
        let doc = |evs: Vec<Value>| json!({"traceEvents": evs}).to_string();
        assert!(check(&doc(vec![ev("B", "f", 1.0, 0.0), ev("E", "f", 2.0, 0.0)])).is_ok());
        assert!(check(&doc(vec![ev("B", "f", 1.0, 0.0)])).unwrap_err().contains("never ended"));
        assert!(check(&doc(vec![ev("B", "f", 1.0, 0.0), ev("E", "g", 2.0, 0.0)])).unwrap_err().contains("closes"));
        assert!(check(&doc(vec![ev("X", "f", 2.0, 1.0), ev("X", "g", 1.0, 1.0)])).unwrap_err().contains("back in time"));
        assert!(check(&doc(vec![ev("X", "f", 1.0, 2.0), ev("X", "g", 2.0, 5.0)])).unwrap_err().contains("contains"));
        assert!(check("[").is_err());
    }
}
