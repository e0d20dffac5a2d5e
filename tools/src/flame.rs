//! Flame graph SVG of a function_graph recording, drawn by the `inferno` crate from folded stacks
//! weighted by each function's self time in nanoseconds.

use crate::calls;
use crate::capture::Recording;

/// The flame graph of `rec` as an interactive SVG.
pub fn svg(rec: &Recording, title: &str) -> Result<Vec<u8>, String> {
    let lines = calls::folded(rec)?;
    if lines.is_empty() {
        return Err("the recording holds no completed calls to draw".into());
    }
    let mut opt = inferno::flamegraph::Options::default();
    opt.title = format!("loongtrace function_graph: {title}");
    opt.count_name = "ns".into();
    opt.name_type = "Function:".into();
    opt.deterministic = true;
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut out)
        .map_err(|e| format!("drawing the flame graph failed: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_frames_with_counts() {
        let s = String::from_utf8(svg(&crate::calls::tests::sample(), "t").unwrap()).unwrap();
        assert!(s.starts_with("<?xml"));
        // inferno writes each frame's title as `name (count ns, pct%)`, count = self + callees.
        for want in ["<title>root (1,000 ns", "<title>a (300 ns", "<title>b (50 ns", "<title>b (400 ns"] {
            assert!(s.contains(want), "{want} missing");
        }
    }
}
