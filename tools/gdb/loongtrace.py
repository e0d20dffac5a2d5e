# loongtrace GDB helpers: loaded by `make gdb` (tools/gdb.sh) with `-x tools/gdb/loongtrace.py`.
#
# Commands:
#   lt-sym ADDR      the kernel's own symboliser (its embedded LTKSYM01 table): name+0xoff/0xsize
#   lt-ftrace        the enabled patch sites, like Linux's enabled_functions
#   lt-trace [CPU]   the ring buffers' events in Linux's `trace` layout, read from guest memory
# Unwinders (so `bt` crosses every tracing path):
#   - a frame that a trampoline or ftrace caller returns to is the traced function at its body,
#     entered from a patch site: its caller is in t0 (the parent), not in ra;
#   - a frame at `return_to_handler` (a function hooked by the graph tracer returned there)
#     continues at the real return address, taken from the per-CPU shadow stack;
#   - an exception frame of the trap vector continues in the interrupted code with every
#     register from the saved PtRegs;
#   - a legacy direct-call adapter (four generated words on the heap) resumes the traced function.
# Everything is read from guest memory through the kernel's debug information (field names, not
# offsets), so the helpers work on a stopped, hung or crashed kernel.

import gdb
import gdb.unwinder
from gdb.FrameDecorator import FrameDecorator

KERNEL = "loongtrace_kernel"
INSN_MOVE_T0_RA = 0x0015002C  # or $t0, $ra, $zero
INSN_MOVE_T1_T0 = 0x0015018D
INSN_MOVE_RA_T1 = 0x001501A1
INSN_ADDI_SP_M32 = 0x02FF8063  # addi.d $sp, $sp, -32
INSN_ADDI_SP_P32 = 0x02C08063  # addi.d $sp, $sp, 32
INSN_JR_RA = 0x4C000020
OPC_MASK = 0xFC000000
OPC_B = 0x50000000
OPC_BL = 0x54000000
U64 = (1 << 64) - 1


# --- reading guest memory and Rust values -------------------------------------------------------

def inferior():
    return gdb.selected_inferior()


def read_u64(addr):
    return int.from_bytes(bytes(inferior().read_memory(addr, 8)), "little")


def read_u32(addr):
    return int.from_bytes(bytes(inferior().read_memory(addr, 4)), "little")


def addr_of(name):
    """Address of an ELF symbol (assembly labels have no debug information)."""
    return eval_address("(unsigned long)&%s" % name)


def eval_address(expr):
    """An address from a C expression (`sym`, `(char *)sym + 8`, `$pc`, `0x9000...`)."""
    lang = gdb.parameter("language")
    gdb.execute("set language c", to_string=True)
    try:
        v = gdb.parse_and_eval(expr)
        if v.type.strip_typedefs().code == gdb.TYPE_CODE_FUNC:
            v = v.address
        return int(v) & U64
    finally:
        gdb.execute("set language %s" % lang, to_string=True)


def ksym_value(path):
    return gdb.parse_and_eval(path)


def scalar(v):
    """The integer inside Rust wrappers (Atomic<u64> -> UnsafeCell -> Align8 -> u64, bitflags...)."""
    for _ in range(12):
        t = v.type.strip_typedefs()
        if t.code in (gdb.TYPE_CODE_INT, gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_BOOL, gdb.TYPE_CODE_CHAR,
                      gdb.TYPE_CODE_ENUM):
            return int(v) & U64
        fields = [f for f in t.fields() if f.type.strip_typedefs().sizeof > 0]
        if len(fields) != 1:
            raise gdb.GdbError("cannot read an integer from %s" % t)
        v = v[fields[0]]
    raise gdb.GdbError("wrapper too deep: %s" % v.type)


def find_field(v, name, depth=8):
    """The first field called `name` in `v` or its nested fields (breadth-first)."""
    queue = [(v, 0)]
    while queue:
        x, d = queue.pop(0)
        t = x.type.strip_typedefs()
        if t.code not in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
            continue
        for f in t.fields():
            if f.name == name:
                return x[f]
        if d < depth:
            for f in t.fields():
                if f.name is not None and not f.artificial and f.type.strip_typedefs().sizeof > 0:
                    queue.append((x[f], d + 1))
    raise gdb.GdbError("no field %s in %s" % (name, v.type))


def first_pointer(v, depth=10):
    queue = [(v, 0)]
    while queue:
        x, d = queue.pop(0)
        t = x.type.strip_typedefs()
        if t.code == gdb.TYPE_CODE_PTR:
            return int(x) & U64
        if t.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION) and d < depth:
            for f in t.fields():
                if f.name is not None and f.type.strip_typedefs().sizeof > 0:
                    queue.append((x[f], d + 1))
    raise gdb.GdbError("no pointer in %s" % v.type)


def vec_items(v, elem_type):
    """The elements of a Rust Vec<T> (pointer and length found by name, not offset)."""
    n = scalar(find_field(v, "len"))
    base = first_pointer(find_field(v, "buf"))
    p = gdb.Value(base).cast(elem_type.pointer())
    return [p[i] for i in range(n)]


def rust_str(v):
    n = scalar(find_field(v, "length"))
    p = scalar(find_field(v, "data_ptr"))
    return bytes(inferior().read_memory(p, n)).decode("utf-8", "replace") if n else ""


def option_some(v):
    """The payload of a Rust Option<T> value, or None."""
    text = v.format_string(max_depth=0)
    if "::None" in text.split("(")[0] or text.endswith("None"):
        return None
    some = v["Some"]
    return some["__0"]


# --- the kernel's own symboliser (lt-sym) --------------------------------------------------------

class KernelSymbols:
    """The embedded `.ksyms` table (LTKSYM01: header, 16-byte entries addr/size/name_off, names)."""

    def __init__(self):
        base = addr_of("__ksyms_start")
        head = bytes(inferior().read_memory(base, 16))
        if head[:8] != b"LTKSYM01":
            raise gdb.GdbError("lt-sym: no LTKSYM01 symbol table at __ksyms_start (found %r)" % head[:8])
        count = int.from_bytes(head[8:12], "little")
        names_len = int.from_bytes(head[12:16], "little")
        raw = bytes(inferior().read_memory(base + 16, count * 16))
        names = bytes(inferior().read_memory(base + 16 + count * 16, names_len))
        self.entries = []
        for i in range(count):
            e = raw[i * 16:(i + 1) * 16]
            addr = int.from_bytes(e[0:8], "little")
            size = int.from_bytes(e[8:12], "little")
            off = int.from_bytes(e[12:16], "little")
            end = names.index(b"\0", off)
            self.entries.append((addr, size, names[off:end].decode("utf-8", "replace")))

    def lookup(self, addr):
        """The kernel's `SymbolTable::lookup` rule: the last entry starting at or below `addr`
        that covers it (a sized entry covers `addr < start + size`; an unsized one covers up to
        the next entry, or only its own address when it is the last); entries sharing a start
        are tried in table order."""
        lo, hi = 0, len(self.entries)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.entries[mid][0] <= addr:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            return None
        has_next = lo < len(self.entries)
        i = lo - 1
        start = self.entries[i][0]
        while True:
            a, size, name = self.entries[i]
            off = addr - a
            covers = (has_next or off == 0) if size == 0 else off < size
            if covers:
                return name, off, size
            i -= 1
            if i < 0 or self.entries[i][0] != start:
                return None

    def display(self, addr):
        r = self.lookup(addr)
        if r is None:
            return "%#x" % addr
        name, off, size = r
        return "%s+%#x/%#x" % (name, off, size) if size else "%s+%#x" % (name, off)

    def name(self, addr):
        r = self.lookup(addr)
        return r[0] if r else "?"


_ksyms = None


def ksyms():
    global _ksyms
    if _ksyms is None:
        _ksyms = KernelSymbols()
    return _ksyms


def short_name(addr):
    n = ksyms().name(addr)
    prefix = KERNEL + "::"
    return n[len(prefix):] if n.startswith(prefix) else n


class LtBtAt(gdb.Command):
    """lt-bt-at LOCATION LABEL: every time LOCATION (an address expression) is reached, print
    `@@LABEL`, a backtrace and `@@end`, and go on (for scripts: the debugger test uses it on a
    JITed BPF program whose address the kernel passes in a register)."""

    def __init__(self):
        super().__init__("lt-bt-at", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, arg, from_tty):
        where, label = arg.rsplit(None, 1)
        addr = int(gdb.parse_and_eval(where)) & U64
        b = gdb.Breakpoint("*%#x" % addr)
        b.commands = "silent\necho @@%s\\n\nbt\necho @@end\\n\ncontinue" % label


LtBtAt()


class LtSym(gdb.Command):
    """lt-sym ADDR: symbolise ADDR with the kernel's own table, as its backtraces do."""

    def __init__(self):
        super().__init__("lt-sym", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        if not arg.strip():
            raise gdb.GdbError("usage: lt-sym ADDR")
        gdb.write("%s\n" % ksyms().display(eval_address(arg)))


# --- lt-ftrace -------------------------------------------------------------------------------------

FLAG_ENABLED, FLAG_REGS, FLAG_DIRECT = 1, 2, 4


def table_modules(table):
    """(start, end, name) of every module's index range in the site table."""
    fields = [f.name for f in table.type.strip_typedefs().fields()]
    if "modules" not in fields:
        return []
    v = table["modules"]
    try:
        elem = v.type.template_argument(0)
    except (RuntimeError, gdb.error):
        elem = gdb.lookup_type("(core::ops::range::Range<usize>, &str)")
    out = []
    for m in vec_items(v, elem):
        r = m["__0"]
        out.append((scalar(r["start"]), scalar(r["end"]), rust_str(m["__1"])))
    return out


def enabled_sites():
    core = option_some(find_field(ksym_value(KERNEL + "::ftrace::core::CORE"), "value"))
    if core is None:
        raise gdb.GdbError("lt-ftrace: ftrace is not initialised yet")
    state_t = gdb.lookup_type(KERNEL + "::ftrace::core::State")
    states = vec_items(core["state"], state_t)
    # The site table: a published `Table` (kernel sites, then module sites at stable indices).
    table_ptr = scalar(ksym_value(KERNEL + "::ftrace::sites::TABLE"))
    if table_ptr == 0:
        raise gdb.GdbError("lt-ftrace: no site table published yet")
    table = gdb.Value(table_ptr).cast(gdb.lookup_type(KERNEL + "::ftrace::sites::Table").pointer()).dereference()
    sites = vec_items(table["sites"], gdb.lookup_type(KERNEL + "::ftrace::sites::Site"))
    modules = table_modules(table)
    out = []
    for i, (site, st) in enumerate(zip(sites, states)):
        flags = scalar(st["flags"])
        if not flags & FLAG_ENABLED:
            continue
        module = next((name for start, end, name in modules if start <= i < end), "")
        ip = scalar(site["ip"])
        # The call slot's target is kept as a signed offset in instructions from the entry.
        off = scalar(st["target"])
        off = off - (1 << 64) if off >= 1 << 63 else off
        target = (ip + 4 * off) & ((1 << 64) - 1) if off else 0
        out.append((ip, rust_str(site["name"]), module, scalar(st["refs"]), flags, target, scalar(st["ops"])))
    return out


class LtFtrace(gdb.Command):
    """lt-ftrace: the enabled patch sites like Linux's enabled_functions:
    function [module] (ops wanting it) R (full-register caller) D (direct trampoline), target,
    ops literal."""

    def __init__(self):
        super().__init__("lt-ftrace", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        prefix = KERNEL + "::"
        for _ip, name, module, refs, flags, target, ops in enabled_sites():
            name = name[len(prefix):] if name.startswith(prefix) else name
            gdb.write("%s%s (%d)%s%s\ttramp: %s\tops: %s\n" % (
                name, " [%s]" % module if module else "", refs, " R" if flags & FLAG_REGS else "  ",
                " D" if flags & FLAG_DIRECT else "  ", ksyms().display(target), ksyms().display(ops)))


# --- lt-trace -------------------------------------------------------------------------------------

KIND_FUNC, KIND_GRAPH_ENTRY, KIND_GRAPH_RETURN, KIND_MARKER = 0, 1, 2, 3
FLAG_IRQS_OFF, FLAG_IN_TRAP = 1, 2
STAMP_VALID, STAMP_BUSY = 2, 1


def buffer_events(buf):
    """Unread events of one RingBuffer (from its consumer cursor to its head), decoded like
    `TraceEntry::from_words` (the CPU is the ring's); slots a writer is filling or that were
    overwritten are skipped."""
    cpu = scalar(buf["cpu"])
    head = scalar(buf["head"])
    cursor = scalar(buf["cursor"])
    slots = buf["slots"]
    # The capacity in use: the mask holds it minus one, shifted by the slot size's log.
    n = (scalar(buf["mask"]) >> 6) + 1
    s = cursor if head - cursor <= n else head - n
    out = []
    while s < head:
        slot = slots[s % n]
        if scalar(slot["stamp"]) == ((s << 6) | STAMP_VALID) & U64:
            w = [scalar(slot["words"][i]) for i in range(5)]
            out.append({"ts": w[0], "ip": w[1], "parent": w[2], "kind": w[3] & 0xFF,
                        "cpu": cpu, "depth": (w[3] >> 16) & 0xFFFF, "extra": w[4]})
        s += 1
    return out


MARKER_OVERWRITTEN = "<marker overwritten>"  # formats::wire::MARKER_OVERWRITTEN


def marker_texts():
    """{number: text} of the `trace_marker` writes tracefs still keeps (its `markers` list)."""
    state = option_some(find_field(ksym_value(KERNEL + "::tracefs::STATE"), "value"))
    if state is None:
        return {}
    v = state["markers"]
    try:
        elem = v.type.template_argument(0)
    except (RuntimeError, gdb.error):
        elem = gdb.lookup_type("(u64, alloc::string::String)")
    out = {}
    for m in vec_items(v, elem):
        text = m["__1"]
        n = scalar(find_field(text, "len"))
        p = first_pointer(find_field(text, "buf"))
        out[scalar(m["__0"])] = bytes(inferior().read_memory(p, n)).decode("utf-8", "replace") if n else ""
    return out


def line_prefix(e, hz):
    """Task, CPU, flags and time columns, as the kernel's `tracer::write_line_prefix`."""
    # Microseconds rounded to nearest, like the kernel (and Linux's `ns2usecs`).
    usecs = (e["ts"] * 1000000000 // hz + 500) // 1000
    secs, us = usecs // 1000000, usecs % 1000000
    irq = "d" if e["depth"] & FLAG_IRQS_OFF else "."
    trap = "h" if e["depth"] & FLAG_IN_TRAP else "."
    # The task is the CPU's context, named as the kernel names it (formats/src/task.rs).
    return "%16s-%-7d [%03d] %s.%s.. %5d.%06d: " % (
        "loongtrace/%d" % e["cpu"], e["cpu"] + 1, e["cpu"], irq, trap, secs, us)


def function_line(e, hz):
    return line_prefix(e, hz) + "%s <-%s" % (short_name(e["ip"]), short_name(e["parent"]))


def marker_line(e, hz, markers):
    """A `trace_marker` write, as Linux's `print` event: `tracing_mark_write: text`."""
    return line_prefix(e, hz) + "%s: %s" % (short_name(e["ip"]), markers.get(e["extra"], MARKER_OVERWRITTEN))


def graph_line(e, hz):
    indent = " " * (2 * (e["depth"] + 1))
    name = short_name(e["ip"])
    if e["kind"] == KIND_GRAPH_ENTRY:
        return " %d)  %s  |%s%s() {" % (e["cpu"], " " * 13, indent, name)
    ns = e["extra"] * 1000000000 // hz
    return " %d) %7d.%03d us  |%s} /* %s */" % (e["cpu"], ns // 1000, ns % 1000, indent, name)


class LtTrace(gdb.Command):
    """lt-trace [CPU]: the unread ring-buffer events of every CPU (or one), oldest first, in
    Linux's `trace` layout (function_graph events as entry/return lines)."""

    def __init__(self):
        super().__init__("lt-trace", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        bufs = ksym_value(KERNEL + "::ftrace::tracer::BUFFERS")
        ncpu = bufs.type.strip_typedefs().range()[1] + 1
        cpus = range(ncpu)
        if arg.strip():
            c = int(gdb.parse_and_eval(arg))
            if not 0 <= c < ncpu:
                raise gdb.GdbError("lt-trace: no CPU %d (0..%d)" % (c, ncpu - 1))
            cpus = [c]
        hz = scalar(ksym_value(KERNEL + "::time::COUNTER_HZ"))
        if hz == 0:
            raise gdb.GdbError("lt-trace: the counter frequency is not known yet (too early in boot)")
        events = []
        for c in cpus:
            events += buffer_events(bufs[c])
        events.sort(key=lambda e: (e["ts"], e["cpu"]))
        markers = marker_texts() if any(e["kind"] == KIND_MARKER for e in events) else {}
        for e in events:
            if e["kind"] == KIND_FUNC:
                gdb.write(function_line(e, hz) + "\n")
            elif e["kind"] == KIND_MARKER:
                gdb.write(marker_line(e, hz, markers) + "\n")
            elif e["kind"] in (KIND_GRAPH_ENTRY, KIND_GRAPH_RETURN):
                gdb.write(graph_line(e, hz) + "\n")
            else:
                gdb.write("%s<event of kind %d>\n" % (line_prefix(e, hz), e["kind"]))


# --- unwinders ------------------------------------------------------------------------------------

GPRS = ["r%d" % i for i in range(32)]


class Symbols:
    """Addresses of the assembly the unwinders recognise (resolved on first use)."""

    def __init__(self):
        self.rth = addr_of("return_to_handler")
        # Find return_to_handler's frame push/pop and its final `jr ra` in its words.
        self.rth_push = self.rth_pop = None
        self.rth_end = self.rth + 4
        for i in range(64):
            a = self.rth + 4 * i
            w = word_at(a)
            if w == INSN_ADDI_SP_M32:
                self.rth_push = a
            elif w == INSN_ADDI_SP_P32:
                self.rth_pop = a
            elif w == INSN_JR_RA:
                self.rth_end = a + 4
                break
        self.trap = [addr_of("loongtrace_trap_entry")]
        try:
            self.trap.append(addr_of("loongtrace_tlbr_entry"))
        except gdb.error:
            pass
        self.trap_ranges = []
        for a in self.trap:
            blk = gdb.current_progspace().block_for_pc(a)
            self.trap_ranges.append((a, a + 0x400 if blk is None else blk.end))
        ptregs = gdb.lookup_type("arch::frame::PtRegs")
        self.pt = {f.name: f.bitpos // 8 for f in ptregs.fields()}
        self.pt_size = ptregs.sizeof


_syms = None


def syms():
    global _syms
    if _syms is None:
        _syms = Symbols()
    return _syms


def copy_regs(pending, info, skip):
    for r in GPRS:
        if r not in skip:
            info.add_saved_register(r, pending.read_register(r))


def word_at(addr):
    try:
        return read_u32(addr)
    except gdb.MemoryError:
        return None


def is_site_body(pc):
    """pc is `ip + 8` of a patch site whose call slot holds a `bl` (an enabled site)."""
    w0, w1 = word_at(pc - 8), word_at(pc - 4)
    return w0 == INSN_MOVE_T0_RA and w1 is not None and (w1 & OPC_MASK) == OPC_BL


def shadow_return(entry_sp):
    """The real return address the graph tracer saved for a call entered with `entry_sp`."""
    per_cpu = ksym_value(KERNEL + "::ftrace::fgraph::GRAPH_CPUS")
    for c in range(per_cpu.type.strip_typedefs().range()[1] + 1):
        st = per_cpu[c]
        depth = scalar(st["depth"])
        entries = find_field(st["entries"], "value")
        top = min(depth, entries.type.strip_typedefs().range()[1] + 1)
        # Entries below the depth; one whose mask is 0 is reserved but not filled yet.
        for i in range(top - 1, -1, -1):
            e = entries[i]
            if scalar(e["sp"]) == entry_sp and scalar(e["mask"]) != 0:
                return scalar(e["call"]["parent"])
    return None


def legacy_adapter_start(pc):
    """The start of the legacy direct-call adapter that `pc` is in (kernel/src/ftrace/direct.rs
    generates it on the heap: move t1, t0; move t0, ra; move ra, t1; b tramp), or None."""
    pattern = [INSN_MOVE_T1_T0, INSN_MOVE_T0_RA, INSN_MOVE_RA_T1]
    for k in range(4):
        start = pc - 4 * k
        words = [word_at(start + 4 * i) for i in range(4)]
        if words[:3] == pattern and words[3] is not None and (words[3] & OPC_MASK) == OPC_B:
            return start
    return None


class LoongtraceUnwinder(gdb.unwinder.Unwinder):
    def __init__(self):
        super().__init__("loongtrace")

    def __call__(self, pending):
        try:
            pc = int(pending.pc()) & U64
            s = syms()
            if (pc == s.rth and pending.level() > 0) or s.rth < pc < s.rth_end:
                return self.graph_return(pending, pc)
            for lo, hi in s.trap_ranges:
                if lo <= pc < hi and pending.level() > 0:
                    return self.trap_frame(pending)
            if pending.level() > 0 and is_site_body(pc):
                return self.site_body(pending, pc)
            return self.legacy_adapter(pending, pc)
        except (gdb.error, gdb.MemoryError):
            return None

    def site_body(self, pending, pc):
        # The traced function at its body, entered from its patch site through a trampoline or an
        # ftrace caller: nothing is on its stack yet, and its return address is in t0.
        sp = pending.read_register("r3")
        parent = pending.read_register("r12")
        info = pending.create_unwind_info(gdb.unwinder.FrameId(sp, pc - 8))
        copy_regs(pending, info, ("r1",))
        info.add_saved_register("r1", parent)
        info.add_saved_register("pc", parent)
        return info

    def graph_return(self, pending, pc):
        # A hooked function returned (or will return) to return_to_handler with sp = the sp it
        # was entered with; the shadow stack entry for that sp holds the real return address.
        # Between return_to_handler's two sp adjustments its own 32-byte frame is on top.
        s = syms()
        sp = int(pending.read_register("r3")) & U64
        if s.rth_push is not None and s.rth_pop is not None and s.rth_push < pc <= s.rth_pop:
            sp += 32
        ret = shadow_return(sp)
        if ret is None:
            return None
        info = pending.create_unwind_info(gdb.unwinder.FrameId(sp, syms().rth))
        copy_regs(pending, info, ("r1",))
        info.add_saved_register("r1", gdb.Value(ret).cast(pending.read_register("r1").type))
        info.add_saved_register("pc", gdb.Value(ret).cast(pending.read_register("pc").type))
        return info

    def trap_frame(self, pending):
        s = syms()
        base = int(pending.read_register("r3")) & U64
        info = pending.create_unwind_info(gdb.unwinder.FrameId(base + s.pt_size, int(pending.pc())))
        t = pending.read_register("r1").type
        for n in range(1, 32):
            if n == 3:
                continue
            info.add_saved_register("r%d" % n, gdb.Value(read_u64(base + s.pt["regs"] + 8 * n)).cast(t))
        info.add_saved_register("r3", gdb.Value(read_u64(base + s.pt["regs"] + 8 * 3)).cast(t))
        info.add_saved_register("pc", gdb.Value(read_u64(base + s.pt["era"])).cast(pending.read_register("pc").type))
        return info

    def legacy_adapter(self, pending, pc):
        start = legacy_adapter_start(pc)
        if start is None:
            return None
        k = (pc - start) // 4
        r = {n: pending.read_register(n) for n in ("r1", "r12", "r13")}
        body, parent = [(r["r1"], r["r12"]), (r["r1"], r["r13"]), (r["r12"], r["r13"]), (r["r12"], r["r1"])][k]
        sp = pending.read_register("r3")
        info = pending.create_unwind_info(gdb.unwinder.FrameId(sp, start))
        copy_regs(pending, info, ("r1", "r12"))
        info.add_saved_register("r1", parent)
        info.add_saved_register("r12", parent)
        info.add_saved_register("pc", body)
        return info


# --- frame filter: name the return_to_handler frames and fold them under the hooked function --

class GraphReturnDecorator(FrameDecorator):
    def __init__(self, fobj, elided=None):
        super().__init__(fobj)
        self._elided = elided

    def elided(self):
        return iter(self._elided) if self._elided else None


class RthDecorator(FrameDecorator):
    def function(self):
        f = self.inferior_frame()
        caller = f.older()
        where = ksyms().display(int(caller.pc())) if caller is not None else "?"
        return "return_to_handler [function_graph return hook; real caller %s]" % where


class LegacyAdapterDecorator(FrameDecorator):
    def function(self):
        return "[legacy direct-call adapter]"


class GraphReturnFilter:
    """Folds each return_to_handler frame under the hooked function that returns through it, and
    names the legacy adapters (heap code without a symbol)."""

    def __init__(self):
        self.name = "loongtrace"
        self.priority = 100
        self.enabled = True
        gdb.frame_filters[self.name] = self

    def filter(self, frames):
        frames = iter(frames)
        pending = None
        for d in frames:
            f = d.inferior_frame()
            try:
                is_rth = int(f.pc()) & U64 == syms().rth and f.level() > 0
            except gdb.error:
                is_rth = False
            if is_rth and pending is not None:
                pending = GraphReturnDecorator(pending, [RthDecorator(d)])
                continue
            if pending is not None:
                yield pending
            try:
                if f.function() is None and legacy_adapter_start(int(f.pc()) & U64) is not None:
                    d = LegacyAdapterDecorator(d)
            except gdb.error:
                pass
            pending = d
        if pending is not None:
            yield pending


def register(objfile=None):
    LtSym()
    LtFtrace()
    LtTrace()
    gdb.unwinder.register_unwinder(None, LoongtraceUnwinder(), replace=True)
    GraphReturnFilter()


register()
