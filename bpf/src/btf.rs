//! A small reader of BTF, the BPF Type Format (the `.BTF` section clang writes with `-g`), for
//! what loading a libbpf-style object needs and nothing else: the types' kinds, names and links,
//! the members of structs, arrays, variables and the variables of a data section (`DATASEC`), and
//! the size of a type as libbpf's `btf__resolve_size` computes it. It does not check BTF the way
//! Linux's loader does (no type is given to the kernel); it only reads, with every offset,
//! length and type id checked, so a malformed section is a [`BtfError`], never a panic.
//!
//! The format is Linux's (`Documentation/bpf/btf.rst`, `include/uapi/linux/btf.h`): a header,
//! a type section of variable-length records (type id 1 is the first; 0 is `void`), and a
//! string section of NUL-terminated names.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// `BTF_KIND_*` numbers.
pub mod kind {
    pub const INT: u8 = 1;
    pub const PTR: u8 = 2;
    pub const ARRAY: u8 = 3;
    pub const STRUCT: u8 = 4;
    pub const UNION: u8 = 5;
    pub const ENUM: u8 = 6;
    pub const FWD: u8 = 7;
    pub const TYPEDEF: u8 = 8;
    pub const VOLATILE: u8 = 9;
    pub const CONST: u8 = 10;
    pub const RESTRICT: u8 = 11;
    pub const FUNC: u8 = 12;
    pub const FUNC_PROTO: u8 = 13;
    pub const VAR: u8 = 14;
    pub const DATASEC: u8 = 15;
    pub const FLOAT: u8 = 16;
    pub const DECL_TAG: u8 = 17;
    pub const TYPE_TAG: u8 = 18;
    pub const ENUM64: u8 = 19;

    /// Linux's name of a kind (`"STRUCT"`, ...).
    pub fn name(k: u8) -> &'static str {
        const NAMES: [&str; 20] = [
            "UNKN",
            "INT",
            "PTR",
            "ARRAY",
            "STRUCT",
            "UNION",
            "ENUM",
            "FWD",
            "TYPEDEF",
            "VOLATILE",
            "CONST",
            "RESTRICT",
            "FUNC",
            "FUNC_PROTO",
            "VAR",
            "DATASEC",
            "FLOAT",
            "DECL_TAG",
            "TYPE_TAG",
            "ENUM64",
        ];
        NAMES.get(k as usize).copied().unwrap_or("UNKN")
    }
}

/// `linkage` of a `VAR`: a `static` variable.
pub const VAR_STATIC: u32 = 0;
/// `linkage` of a `VAR`: a global variable defined here.
pub const VAR_GLOBAL_ALLOCATED: u32 = 1;
/// `linkage` of a `VAR`: an `extern` variable.
pub const VAR_GLOBAL_EXTERN: u32 = 2;

/// `BTF_MAGIC`, as the first two bytes of a little-endian section.
const MAGIC: u16 = 0xeb9f;
/// Size of a pointer on the BPF target.
const PTR_SIZE: u32 = 8;
/// How many links [`Btf::resolve_size`] and [`Btf::skip_mods_and_typedefs`] follow (libbpf's
/// `MAX_RESOLVE_DEPTH`): a longer chain, or a loop, is an error.
pub const MAX_RESOLVE_DEPTH: usize = 32;

/// Why a `.BTF` section cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfError(pub String);

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(reason: impl Into<String>) -> Result<T, BtfError> {
    Err(BtfError(reason.into()))
}

/// One type record: the common part (`struct btf_type`) and where its kind-specific data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Type {
    pub kind: u8,
    pub name_off: u32,
    /// Members of a struct or union, values of an enum, parameters, variables of a `DATASEC`.
    pub vlen: u16,
    /// `size` (INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT) or `type` (the others).
    pub size_or_type: u32,
    /// Byte offset of the kind-specific data (after the 12 common bytes) in the type section.
    data: usize,
}

/// A member of a struct or union.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    pub name: &'a str,
    pub type_id: u32,
    /// Bit offset (and, with `kind_flag`, bitfield size), as BTF stores it.
    pub offset: u32,
}

/// An array: element type, index type, element count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Array {
    pub elem: u32,
    pub index: u32,
    pub nelems: u32,
}

/// A variable of a `DATASEC` (`struct btf_var_secinfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VarSecinfo {
    /// The `VAR` type.
    pub type_id: u32,
    pub offset: u32,
    pub size: u32,
}

/// A `VAR`: its name, linkage ([`VAR_STATIC`], ...) and type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var<'a> {
    pub name: &'a str,
    pub linkage: u32,
    pub type_id: u32,
}

/// A parsed `.BTF` section (borrowed: names are read from it when asked for).
#[derive(Clone, Debug)]
pub struct Btf<'a> {
    types_data: &'a [u8],
    strings: &'a [u8],
    /// Index = type id; `types[0]` is `void`.
    types: Vec<Type>,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

impl<'a> Btf<'a> {
    /// Reads the header and walks the type section once, so that every record lies inside it,
    /// has a known kind and a name offset inside the string table.
    pub fn parse(data: &'a [u8]) -> Result<Btf<'a>, BtfError> {
        let magic = data.get(..2).map(|m| u16::from_le_bytes([m[0], m[1]]));
        match magic {
            None => return err("truncated header"),
            Some(MAGIC) => {}
            Some(m) if m == MAGIC.swap_bytes() => return err("big-endian BTF"),
            Some(m) => return err(format!("bad magic {m:#06x}")),
        }
        if data.get(2) != Some(&1) {
            return err("unsupported BTF version (not 1)");
        }
        // btf_header: magic u16, version u8, flags u8, hdr_len, type_off, type_len, str_off, str_len
        let header = (|| {
            Some([
                u32_at(data, 4)?,
                u32_at(data, 8)?,
                u32_at(data, 12)?,
                u32_at(data, 16)?,
                u32_at(data, 20)?,
            ])
        })();
        let Some([hdr_len, type_off, type_len, str_off, str_len]) =
            header.map(|h| h.map(|v| v as u64))
        else {
            return err("truncated header");
        };
        if hdr_len < 24 {
            return err(format!("header length {hdr_len}, less than 24"));
        }
        let range = |off: u64, len: u64, what: &str| -> Result<&'a [u8], BtfError> {
            let start = hdr_len + off;
            let end = start + len;
            if end > data.len() as u64 {
                return err(format!(
                    "{what} ({start:#x}..{end:#x}) outside the section ({:#x} bytes)",
                    data.len()
                ));
            }
            Ok(&data[start as usize..end as usize])
        };
        let types_data = range(type_off, type_len, "type section")?;
        let strings = range(str_off, str_len, "string section")?;
        if strings.first() != Some(&0) {
            return err("the string section does not start with an empty string");
        }

        let mut types = alloc::vec![Type {
            kind: 0,
            name_off: 0,
            vlen: 0,
            size_or_type: 0,
            data: 0
        }];
        let mut at = 0usize;
        while at < types_data.len() {
            let word = |i: usize| u32_at(types_data, at + i * 4);
            let (Some(name_off), Some(info), Some(size_or_type)) = (word(0), word(1), word(2))
            else {
                return err(format!("truncated type [{}]", types.len()));
            };
            let kind = ((info >> 24) & 0x1f) as u8;
            let vlen = (info & 0xffff) as u16;
            let n = vlen as usize;
            let extra = match kind {
                kind::INT | kind::VAR | kind::DECL_TAG => 4,
                kind::PTR
                | kind::FWD
                | kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::FUNC
                | kind::FLOAT
                | kind::TYPE_TAG => 0,
                kind::ARRAY => 12,
                kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => n * 12,
                kind::ENUM | kind::FUNC_PROTO => n * 8,
                k => return err(format!("type [{}] of unknown kind {k}", types.len())),
            };
            if name_off as u64 >= str_len {
                return err(format!(
                    "name of type [{}] outside the string section",
                    types.len()
                ));
            }
            let end = at + 12 + extra;
            if end > types_data.len() {
                return err(format!("truncated type [{}]", types.len()));
            }
            types.push(Type {
                kind,
                name_off,
                vlen,
                size_or_type,
                data: at + 12,
            });
            at = end;
        }
        Ok(Btf {
            types_data,
            strings,
            types,
        })
    }

    /// How many types there are, `void` included (the largest id is one less).
    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.len() <= 1
    }

    /// The NUL-terminated UTF-8 string at `off` in the string section.
    pub fn name(&self, off: u32) -> Result<&'a str, BtfError> {
        let rest = self
            .strings
            .get(off as usize..)
            .ok_or_else(|| BtfError(format!("name offset {off} outside the string section")))?;
        let len = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| BtfError(format!("name at {off} is not NUL-terminated")))?;
        core::str::from_utf8(&rest[..len])
            .map_err(|_| BtfError(format!("name at {off} is not UTF-8")))
    }

    /// Type `id` (0 is `void`, of kind 0).
    pub fn type_by_id(&self, id: u32) -> Result<&Type, BtfError> {
        self.types.get(id as usize).ok_or_else(|| {
            BtfError(format!(
                "type [{id}] does not exist ({} types)",
                self.types.len() - 1
            ))
        })
    }

    /// The name of type `id` (empty for anonymous types).
    pub fn type_name(&self, id: u32) -> Result<&'a str, BtfError> {
        self.name(self.type_by_id(id)?.name_off)
    }

    fn word(&self, t: &Type, i: usize) -> Result<u32, BtfError> {
        // Every record was checked whole by `parse`.
        u32_at(self.types_data, t.data + i * 4).ok_or_else(|| BtfError("truncated type".into()))
    }

    fn expect(&self, id: u32, k: u8) -> Result<&Type, BtfError> {
        let t = self.type_by_id(id)?;
        if t.kind != k {
            return err(format!(
                "type [{id}] is {}, not {}",
                kind::name(t.kind),
                kind::name(k)
            ));
        }
        Ok(t)
    }

    /// The members of struct or union `id`.
    pub fn members(&self, id: u32) -> Result<Vec<Member<'a>>, BtfError> {
        let t = *self.type_by_id(id)?;
        if t.kind != kind::STRUCT && t.kind != kind::UNION {
            return err(format!(
                "type [{id}] is {}, not STRUCT or UNION",
                kind::name(t.kind)
            ));
        }
        (0..t.vlen as usize)
            .map(|i| {
                Ok(Member {
                    name: self.name(self.word(&t, i * 3)?)?,
                    type_id: self.word(&t, i * 3 + 1)?,
                    offset: self.word(&t, i * 3 + 2)?,
                })
            })
            .collect()
    }

    /// Array `id`.
    pub fn array(&self, id: u32) -> Result<Array, BtfError> {
        let t = *self.expect(id, kind::ARRAY)?;
        Ok(Array {
            elem: self.word(&t, 0)?,
            index: self.word(&t, 1)?,
            nelems: self.word(&t, 2)?,
        })
    }

    /// Variable `id`.
    pub fn var(&self, id: u32) -> Result<Var<'a>, BtfError> {
        let t = *self.expect(id, kind::VAR)?;
        Ok(Var {
            name: self.name(t.name_off)?,
            linkage: self.word(&t, 0)?,
            type_id: t.size_or_type,
        })
    }

    /// The variables of `DATASEC` `id`, in the order of the section's records.
    pub fn datasec_vars(&self, id: u32) -> Result<Vec<VarSecinfo>, BtfError> {
        let t = *self.expect(id, kind::DATASEC)?;
        (0..t.vlen as usize)
            .map(|i| {
                Ok(VarSecinfo {
                    type_id: self.word(&t, i * 3)?,
                    offset: self.word(&t, i * 3 + 1)?,
                    size: self.word(&t, i * 3 + 2)?,
                })
            })
            .collect()
    }

    /// The first `DATASEC` named `name` (`".maps"`, `".bss"`, ...).
    pub fn find_datasec(&self, name: &str) -> Option<u32> {
        (1..self.types.len() as u32).find(|&id| {
            let t = &self.types[id as usize];
            t.kind == kind::DATASEC && self.name(t.name_off).is_ok_and(|n| n == name)
        })
    }

    /// Follows typedefs and modifiers (`const`, `volatile`, `restrict`, type tags) from `id` to
    /// the type they name: its id and record (libbpf's `skip_mods_and_typedefs`).
    pub fn skip_mods_and_typedefs(&self, mut id: u32) -> Result<(u32, &Type), BtfError> {
        for _ in 0..=MAX_RESOLVE_DEPTH {
            let t = self.type_by_id(id)?;
            match t.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Ok((id, t)),
            }
        }
        err(format!(
            "type [{id}]: more than {MAX_RESOLVE_DEPTH} typedefs and modifiers (a loop?)"
        ))
    }

    /// The size in bytes of type `id`, as libbpf's `btf__resolve_size`: through typedefs,
    /// modifiers, variables and declaration tags to a sized type (int, struct, union, enum,
    /// float, data section; 8 for a pointer), times the element counts of every array on the
    /// way (`u32[2][3]` is 24 bytes). `void`, functions and forward declarations have no size.
    pub fn resolve_size(&self, id: u32) -> Result<u32, BtfError> {
        let mut nelems: u32 = 1;
        let mut cur = id;
        for _ in 0..MAX_RESOLVE_DEPTH {
            let t = *self.type_by_id(cur)?;
            let size = match t.kind {
                kind::INT
                | kind::STRUCT
                | kind::UNION
                | kind::ENUM
                | kind::ENUM64
                | kind::DATASEC
                | kind::FLOAT => t.size_or_type,
                kind::PTR => PTR_SIZE,
                kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::VAR
                | kind::DECL_TAG
                | kind::TYPE_TAG => {
                    cur = t.size_or_type;
                    continue;
                }
                kind::ARRAY => {
                    let a = self.array(cur)?;
                    nelems = nelems
                        .checked_mul(a.nelems)
                        .ok_or_else(|| BtfError(format!("type [{id}] is larger than 4 GiB")))?;
                    cur = a.elem;
                    continue;
                }
                0 => return err(format!("type [{id}] is void, which has no size")),
                k => return err(format!("type [{id}]: a {} has no size", kind::name(k))),
            };
            return size
                .checked_mul(nelems)
                .ok_or_else(|| BtfError(format!("type [{id}] is larger than 4 GiB")));
        }
        err(format!(
            "type [{id}]: more than {MAX_RESOLVE_DEPTH} links to a sized type (a loop?)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Builds a `.BTF` section from type records (each a list of words) and a string table.
    fn section(types: &[&[u32]], strings: &[u8]) -> Vec<u8> {
        let type_bytes: Vec<u8> = types
            .iter()
            .flat_map(|t| t.iter())
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&type_bytes);
        out.extend_from_slice(strings);
        out
    }

    fn info(k: u8, vlen: u32) -> u32 {
        (k as u32) << 24 | vlen
    }

    // Strings: 0 "", 1 "u32", 5 "s", 7 "a", 9 "b", 11 "t", 13 ".maps", 19 "v"
    const STRINGS: &[u8] = b"\0u32\0s\0a\0b\0t\0.maps\0v\0";

    /// [1] u32, [2] u32[3], [3] u32[2][3], [4] typedef t = [3], [5] const [4], [6] volatile [5],
    /// [7] struct s { u32 a; [6] b; } (4 + 24 = 28 bytes), [8] union { [7] a; u32 b; },
    /// [9] enum (4 bytes), [10] ptr to [7], [11] void *, [12] VAR v: [7], [13] DATASEC .maps { v }
    fn sample() -> Vec<u8> {
        section(
            &[
                &[1, info(kind::INT, 0), 4, 32],
                &[0, info(kind::ARRAY, 0), 0, 1, 1, 3],
                &[0, info(kind::ARRAY, 0), 0, 2, 1, 2],
                &[11, info(kind::TYPEDEF, 0), 3],
                &[0, info(kind::CONST, 0), 4],
                &[0, info(kind::VOLATILE, 0), 5],
                &[5, info(kind::STRUCT, 2), 28, 7, 1, 0, 9, 6, 32],
                &[0, info(kind::UNION, 2), 28, 7, 7, 0, 9, 1, 0],
                &[0, info(kind::ENUM, 1), 4, 7, 5],
                &[0, info(kind::PTR, 0), 7],
                &[0, info(kind::PTR, 0), 0],
                &[19, info(kind::VAR, 0), 7, VAR_GLOBAL_ALLOCATED],
                &[13, info(kind::DATASEC, 1), 0, 12, 0, 28],
            ],
            STRINGS,
        )
    }

    #[test]
    fn sizes_through_typedefs_modifiers_and_nested_arrays() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.len(), 14);
        assert_eq!(btf.resolve_size(1), Ok(4));
        assert_eq!(btf.resolve_size(2), Ok(12));
        assert_eq!(btf.resolve_size(3), Ok(24), "u32[2][3]");
        assert_eq!(
            btf.resolve_size(6),
            Ok(24),
            "volatile const typedef of u32[2][3]"
        );
        assert_eq!(btf.resolve_size(7), Ok(28));
        assert_eq!(btf.resolve_size(8), Ok(28));
        assert_eq!(btf.resolve_size(9), Ok(4));
        assert_eq!(btf.resolve_size(10), Ok(8));
        assert_eq!(
            btf.resolve_size(12),
            Ok(28),
            "a variable has its type's size"
        );
        assert!(btf.resolve_size(0).is_err(), "void");
        assert!(btf.resolve_size(99).is_err());
        assert_eq!(btf.skip_mods_and_typedefs(6).map(|(id, _)| id), Ok(3));
        let members = btf.members(7).unwrap();
        assert_eq!(
            members
                .iter()
                .map(|m| (m.name, m.type_id, m.offset))
                .collect::<Vec<_>>(),
            [("a", 1, 0), ("b", 6, 32)]
        );
        assert_eq!(
            btf.array(3),
            Ok(Array {
                elem: 2,
                index: 1,
                nelems: 2
            })
        );
        assert_eq!(
            btf.var(12),
            Ok(Var {
                name: "v",
                linkage: VAR_GLOBAL_ALLOCATED,
                type_id: 7
            })
        );
        assert_eq!(btf.find_datasec(".maps"), Some(13));
        assert_eq!(btf.find_datasec(".bss"), None);
        assert_eq!(
            btf.datasec_vars(13),
            Ok(alloc::vec![VarSecinfo {
                type_id: 12,
                offset: 0,
                size: 28
            }])
        );
        assert!(btf.members(1).is_err());
        assert!(btf.array(1).is_err());
    }

    #[test]
    fn loops_and_overflows_are_errors() {
        // [1] typedef -> [2] typedef -> [1]; [3] array of 2^16 x [4] array of 2^16 x [5] u32
        let data = section(
            &[
                &[0, info(kind::TYPEDEF, 0), 2],
                &[0, info(kind::TYPEDEF, 0), 1],
                &[0, info(kind::ARRAY, 0), 0, 4, 5, 1 << 16],
                &[0, info(kind::ARRAY, 0), 0, 5, 5, 1 << 16],
                &[0, info(kind::INT, 0), 4, 32],
            ],
            b"\0",
        );
        let btf = Btf::parse(&data).unwrap();
        assert!(btf.resolve_size(1).unwrap_err().0.contains("loop"));
        assert!(
            btf.skip_mods_and_typedefs(1)
                .unwrap_err()
                .0
                .contains("loop")
        );
        assert!(btf.resolve_size(3).unwrap_err().0.contains("4 GiB"));
        assert_eq!(btf.resolve_size(4), Ok(1 << 18));
    }

    #[test]
    fn malformed_sections_are_errors() {
        let good = sample();
        assert!(Btf::parse(&good[..10]).is_err());
        for len in 0..good.len() {
            // every truncation fails (the header's lengths no longer fit), none panics
            assert!(Btf::parse(&good[..len]).is_err(), "{len}");
        }
        let mut bad_kind = good.clone();
        bad_kind[24 + 7] = 25; // kind of type [1]
        assert!(
            Btf::parse(&bad_kind)
                .unwrap_err()
                .0
                .contains("unknown kind")
        );
        let mut bad_name = good.clone();
        bad_name[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(
            Btf::parse(&bad_name)
                .unwrap_err()
                .0
                .contains("string section")
        );
        let mut big_endian = good.clone();
        big_endian[..2].copy_from_slice(&MAGIC.to_be_bytes());
        assert_eq!(Btf::parse(&big_endian).unwrap_err().0, "big-endian BTF");
        // a name without its NUL: readable types, an error when the name is asked for
        let data = section(&[&[1, info(kind::INT, 0), 4, 32]], b"\0abc");
        let btf = Btf::parse(&data).unwrap();
        assert!(btf.type_name(1).is_err());
        // every byte of the sample set to 0xff in turn: errors or a BTF, never a panic
        for i in 0..good.len() {
            let mut m = good.clone();
            m[i] = 0xff;
            if let Ok(btf) = Btf::parse(&m) {
                for id in 0..btf.len() as u32 + 1 {
                    let _ = btf.resolve_size(id);
                    let _ = btf.members(id);
                    let _ = btf.datasec_vars(id);
                    let _ = btf.type_name(id);
                }
            }
        }
    }
}
