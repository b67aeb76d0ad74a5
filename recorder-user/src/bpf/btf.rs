//! The one thing syscribe reads from the kernel's BTF (/sys/kernel/btf/vmlinux): where a
//! struct keeps a member — `task_struct.real_cred`, for the capability program. A small reader
//! of the format (the kernel's Documentation/bpf/btf.rst), every read bounded by the file's
//! own section lengths; aya parses BTF too but keeps its type lookups to itself.

use std::{io::Read as _, ops::Range, path::Path};

/// Where the running kernel describes its types.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
/// A vmlinux BTF is ~6 MiB; more is not one.
const MAX_BTF_BYTES: u64 = 64 << 20;
const MAGIC: u16 = 0xeb9f;
/// Anonymous structs and unions nested in each other, followed at most this deep.
const MAX_NESTING: usize = 8;
/// Members looked at in one search at most (task_struct has ~250, with its anonymous ones): a
/// blob whose anonymous members point back at their own struct is refused, not followed
/// vlen^8 times.
const MAX_MEMBER_VISITS: usize = 1 << 16;

const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_BTF_BYTES} bytes")]
    TooLarge { path: String },
    #[error("not BTF this kernel can have written: {0}")]
    Format(String),
    #[error("no struct {0} in the kernel's BTF")]
    NoStruct(String),
    #[error("struct {structure} has no member {member} (nor in its anonymous members)")]
    NoMember { structure: String, member: String },
}

/// The byte offset of `member` in struct `structure`, as the BTF file at `path` says.
pub fn member_offset_in(path: &Path, structure: &str, member: &str) -> Result<u64, BtfError> {
    let read_err = |source| BtfError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut data = Vec::new();
    std::fs::File::open(path)
        .map_err(read_err)?
        .take(MAX_BTF_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() as u64 > MAX_BTF_BYTES {
        return Err(BtfError::TooLarge {
            path: path.display().to_string(),
        });
    }
    member_offset(&data, structure, member)
}

/// The byte offset of `member` in struct `structure` in the BTF blob `data` (the host's byte
/// order), looking through anonymous struct and union members.
pub fn member_offset(data: &[u8], structure: &str, member: &str) -> Result<u64, BtfError> {
    let btf = Btf::parse(data)?;
    let id = btf
        .types
        .iter()
        .position(|t| t.kind == KIND_STRUCT && t.vlen > 0 && btf.name(t.name_off) == structure)
        .ok_or_else(|| BtfError::NoStruct(structure.to_owned()))?;
    let mut budget = MAX_MEMBER_VISITS;
    btf.find_member(id, member, 0, 0, &mut budget)?
        .map(|bits| bits / 8)
        .ok_or_else(|| BtfError::NoMember {
            structure: structure.to_owned(),
            member: member.to_owned(),
        })
}

struct Btf<'a> {
    strings: &'a [u8],
    types_data: &'a [u8],
    /// Type `id` is `types[id - 1]`.
    types: Vec<Type>,
}

struct Type {
    kind: u8,
    name_off: u32,
    vlen: u16,
    kind_flag: bool,
    /// Its trailing data (a struct's members), in `types_data`.
    trailing: Range<usize>,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn section(data: &[u8], start: u32, len: u32, what: &str) -> Result<Range<usize>, BtfError> {
    let start = start as usize;
    let end = start.checked_add(len as usize);
    match end {
        Some(end) if end <= data.len() => Ok(start..end),
        _ => Err(BtfError::Format(format!(
            "the {what} section ({start}+{len}) runs past the file's {} bytes",
            data.len()
        ))),
    }
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let short = || BtfError::Format(format!("{} bytes: shorter than a header", data.len()));
        let magic = u16::from_ne_bytes(data.get(0..2).ok_or_else(short)?.try_into().unwrap());
        if magic != MAGIC {
            return Err(BtfError::Format(format!(
                "magic {magic:#06x}, not {MAGIC:#06x} (another byte order, or not BTF)"
            )));
        }
        let field = |at| u32_at(data, at).ok_or_else(short);
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (field(4)?, field(8)?, field(12)?, field(16)?, field(20)?);
        let body = data.get(hdr_len as usize..).ok_or_else(short)?;
        let types_data = &body[section(body, type_off, type_len, "type")?];
        let strings = &body[section(body, str_off, str_len, "string")?];
        let mut types = Vec::new();
        let mut at = 0usize;
        while at < types_data.len() {
            let id = types.len() + 1;
            let bad = || BtfError::Format(format!("type {id} at byte {at} is cut short"));
            let name_off = u32_at(types_data, at).ok_or_else(bad)?;
            let info = u32_at(types_data, at + 4).ok_or_else(bad)?;
            let kind = ((info >> 24) & 0x1f) as u8;
            let vlen = (info & 0xffff) as u16;
            let trailing_len = match kind {
                // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG.
                2 | 7..=12 | 16 | 18 => 0,
                // INT, VAR, DECL_TAG: one u32.
                1 | 14 | 17 => 4,
                // ARRAY: type, index type, count.
                3 => 12,
                // STRUCT, UNION, DATASEC, ENUM64: 12 bytes each.
                4 | 5 | 15 | 19 => 12 * usize::from(vlen),
                // ENUM, FUNC_PROTO: 8 bytes each.
                6 | 13 => 8 * usize::from(vlen),
                other => {
                    return Err(BtfError::Format(format!(
                        "type {id} has kind {other}, unknown to this reader"
                    )));
                }
            };
            let start = at + 12;
            let end = start + trailing_len;
            if end > types_data.len() {
                return Err(bad());
            }
            types.push(Type {
                kind,
                name_off,
                vlen,
                kind_flag: info >> 31 == 1,
                trailing: start..end,
            });
            at = end;
        }
        Ok(Self {
            strings,
            types_data,
            types,
        })
    }

    /// The NUL-terminated string at `offset` ("" when out of range or not UTF-8).
    fn name(&self, offset: u32) -> &'a str {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or_default()
    }

    /// `member`'s offset in bits from the outermost struct, searching struct or union
    /// `types[index]` (itself at `base` bits) and its anonymous members.
    fn find_member(
        &self,
        index: usize,
        member: &str,
        base: u64,
        depth: usize,
        budget: &mut usize,
    ) -> Result<Option<u64>, BtfError> {
        let ty = &self.types[index];
        for m in self.types_data[ty.trailing.clone()].chunks_exact(12) {
            *budget = budget.checked_sub(1).ok_or_else(|| {
                BtfError::Format(format!(
                    "more than {MAX_MEMBER_VISITS} members looked at for {member} (anonymous members that loop?)"
                ))
            })?;
            let (name_off, type_id, offset) = (
                u32_at(m, 0).unwrap_or_default(),
                u32_at(m, 4).unwrap_or_default(),
                u32_at(m, 8).unwrap_or_default(),
            );
            // With kind_flag, the top 8 bits are a bitfield's size.
            let bits = u64::from(if ty.kind_flag {
                offset & 0xff_ffff
            } else {
                offset
            });
            let name = self.name(name_off);
            if name == member {
                if bits % 8 != 0 {
                    return Err(BtfError::Format(format!(
                        "member {member} is a bitfield (bit {bits})"
                    )));
                }
                return Ok(Some(base + bits));
            }
            let nested = (type_id as usize)
                .checked_sub(1)
                .filter(|&i| i < self.types.len());
            if let Some(i) = nested
                && name.is_empty()
                && depth < MAX_NESTING
                && matches!(self.types[i].kind, KIND_STRUCT | KIND_UNION)
                && let Some(found) = self.find_member(i, member, base + bits, depth + 1, budget)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: `types` (each already encoded) and the string section.
    fn blob(types: &[Vec<u32>], strings: &[u8]) -> Vec<u8> {
        let type_bytes: Vec<u8> = types
            .iter()
            .flatten()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        for word in [
            24u32,
            0,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&word.to_ne_bytes());
        }
        out.extend_from_slice(&type_bytes);
        out.extend_from_slice(strings);
        out
    }

    fn info(kind: u32, vlen: u32, kind_flag: bool) -> u32 {
        (u32::from(kind_flag) << 31) | (kind << 24) | vlen
    }

    /// Strings: 0 "", 1 "long", 6 "task_struct", 18 "real_cred", 28 "cred", 33 "flags".
    const STRINGS: &[u8] = b"\0long\0task_struct\0real_cred\0cred\0flags\0";

    fn task_struct() -> Vec<u8> {
        blob(
            &[
                // 1: int long, 8 bytes.
                vec![1, info(1, 0, false), 8, 64],
                // 2: pointer to 1.
                vec![0, info(2, 0, false), 1],
                // 3: anonymous union { cred at 0 }.
                vec![0, info(KIND_UNION.into(), 1, false), 8, 28, 2, 0],
                // 4: struct task_struct { flags: 4 bits at 0 (bitfield), anon union at 64,
                //    real_cred at 1024 }.
                vec![
                    6,
                    info(KIND_STRUCT.into(), 3, true),
                    256,
                    33,
                    1,
                    4 << 24,
                    0,
                    3,
                    64,
                    18,
                    2,
                    1024,
                ],
            ],
            STRINGS,
        )
    }

    #[test]
    fn a_members_offset_is_found_directly_and_through_anonymous_members() {
        let data = task_struct();
        assert_eq!(
            member_offset(&data, "task_struct", "real_cred").unwrap(),
            128
        );
        assert_eq!(member_offset(&data, "task_struct", "cred").unwrap(), 8);
        assert!(matches!(
            member_offset(&data, "task_struct", "flags"),
            Ok(0)
        ));
        assert!(matches!(
            member_offset(&data, "task_struct", "pid"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            member_offset(&data, "cred", "uid"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn broken_blobs_are_refused_with_the_reason() {
        let data = task_struct();
        for cut in [0, 3, 23, 30, data.len() - STRINGS.len() - 5] {
            let err = member_offset(&data[..cut], "task_struct", "real_cred").unwrap_err();
            assert!(matches!(err, BtfError::Format(_)), "cut at {cut}: {err}");
        }
        let mut swapped = data.clone();
        swapped.swap(0, 1);
        assert!(
            member_offset(&swapped, "task_struct", "real_cred")
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        let unknown = blob(&[vec![0, info(31, 0, false), 0]], STRINGS);
        assert!(
            member_offset(&unknown, "task_struct", "real_cred")
                .unwrap_err()
                .to_string()
                .contains("kind 31")
        );
        // A member that names a type id out of range is only not followed.
        let dangling = blob(
            &[vec![6, info(KIND_STRUCT.into(), 1, false), 8, 0, 99, 0]],
            STRINGS,
        );
        assert!(matches!(
            member_offset(&dangling, "task_struct", "real_cred"),
            Err(BtfError::NoMember { .. })
        ));
    }

    /// The running kernel's own BTF (every kernel syscribe supports has it): both credential
    /// pointers found, aligned, apart (their order is the kernel's, and randomized with
    /// CONFIG_RANDSTRUCT), well inside the struct.
    #[test]
    fn the_running_kernels_task_struct_has_both_credentials() {
        let path = Path::new(VMLINUX);
        let real = member_offset_in(path, "task_struct", "real_cred").unwrap();
        let cred = member_offset_in(path, "task_struct", "cred").unwrap();
        assert_ne!(real, cred);
        for offset in [real, cred] {
            assert_eq!(offset % 8, 0, "real_cred at {real}, cred at {cred}");
            assert!(offset > 0 && offset < 64 << 10, "{offset}");
        }
    }

    #[test]
    fn anonymous_members_that_loop_are_refused() {
        // 1: struct task_struct { anonymous member of type 1 itself, ×200 }.
        let mut looping = vec![6, info(KIND_STRUCT.into(), 200, false), 8];
        for _ in 0..200 {
            looping.extend([0, 1, 0]);
        }
        let err =
            member_offset(&blob(&[looping], STRINGS), "task_struct", "real_cred").unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
    }
}
