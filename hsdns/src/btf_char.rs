//! Marks an integer type of an eBPF object's BTF as a C `char`, so bpftool
//! prints arrays of it as strings.
//!
//! Rust has no `char` of one byte: the name fields of the maps are `i8`
//! arrays (`hsdns_common::NameChar`), which bpftool prints as numbers. Its
//! string rule (`is_str_array` in bpftool's btf_dumper.c) wants a 1-byte
//! INT with the CHAR encoding and printable bytes up to a NUL; the dotted
//! names are exactly that. `i8` is used for nothing else in the program,
//! so its INT type gets the encoding. Run by `build.rs` on the built
//! object, and tested here.

/// BTF_KIND_* (linux/btf.h) and the size of what follows each type.
fn kind_extra(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 => 4,                    // INT
        2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        3 => 12,                   // ARRAY
        4 | 5 => 12 * vlen,        // STRUCT, UNION
        6 => 8 * vlen,             // ENUM
        13 => 8 * vlen,            // FUNC_PROTO
        14 => 4,                   // VAR
        15 => 12 * vlen,           // DATASEC
        17 => 4,                   // DECL_TAG
        19 => 12 * vlen,           // ENUM64
        _ => return None,
    })
}

const BTF_KIND_INT: u32 = 1;
const BTF_INT_CHAR: u32 = 2;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The `.BTF` section of a little-endian ELF64 object: (offset, size).
fn btf_section(elf: &[u8]) -> Option<(usize, usize)> {
    if elf.get(..4)? != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None;
    }
    let shoff = u64_at(elf, 0x28)? as usize;
    let shentsize = u16_at(elf, 0x3a)? as usize;
    let shnum = u16_at(elf, 0x3c)? as usize;
    let shstrndx = u16_at(elf, 0x3e)? as usize;
    let sh = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(elf, sh(shstrndx) + 24)? as usize;
    (0..shnum).find_map(|i| {
        let name = u32_at(elf, sh(i))? as usize + strtab;
        let end = name + elf.get(name..)?.iter().position(|&c| c == 0)?;
        (&elf[name..end] == b".BTF").then(|| {
            Some((
                u64_at(elf, sh(i) + 24)? as usize,
                u64_at(elf, sh(i) + 32)? as usize,
            ))
        })?
    })
}

/// Walks the INT types of the object's BTF: `f(name, data)` may change
/// the INT's data word. Returns how many INTs `f` changed.
fn for_each_int(
    elf: &mut [u8],
    mut f: impl FnMut(&[u8], u32) -> Option<u32>,
) -> Result<usize, String> {
    let (off, size) = btf_section(elf).ok_or("no .BTF section in the object")?;
    let btf = elf
        .get_mut(off..off + size)
        .ok_or(".BTF section out of bounds")?;
    if u16_at(btf, 0) != Some(0xeb9f) {
        return Err("bad BTF magic".into());
    }
    let hdr_len = u32_at(btf, 4).ok_or("short BTF header")? as usize;
    let type_off = hdr_len + u32_at(btf, 8).ok_or("short BTF header")? as usize;
    let type_len = u32_at(btf, 12).ok_or("short BTF header")? as usize;
    let str_off = hdr_len + u32_at(btf, 16).ok_or("short BTF header")? as usize;
    let mut at = type_off;
    let mut changed = 0;
    while at < type_off + type_len {
        let name_off = u32_at(btf, at).ok_or("truncated BTF type")? as usize;
        let info = u32_at(btf, at + 4).ok_or("truncated BTF type")?;
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let extra = kind_extra(kind, vlen).ok_or_else(|| format!("unknown BTF kind {kind}"))?;
        if kind == BTF_KIND_INT {
            let name = btf
                .get(str_off + name_off..)
                .ok_or("BTF name out of bounds")?;
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            let data_at = at + 12;
            let data = u32_at(btf, data_at).ok_or("truncated INT")?;
            if let Some(new) = f(name, data) {
                btf[data_at..data_at + 4].copy_from_slice(&new.to_le_bytes());
                changed += 1;
            }
        }
        at += 12 + extra;
    }
    Ok(changed)
}

/// The BTF encoding bits (BTF_INT_SIGNED 1, CHAR 2, BOOL 4) of the INT
/// type named `int_name`, if there is one.
pub fn int_encoding(elf: &[u8], int_name: &str) -> Option<u32> {
    let mut copy = elf.to_vec();
    let mut found = None;
    for_each_int(&mut copy, |name, data| {
        if name == int_name.as_bytes() {
            found = Some((data >> 24) & 0xf);
        }
        None
    })
    .ok()?;
    found
}

/// Gives every INT type named `int_name` of the object's BTF the CHAR
/// encoding. Returns how many were changed; errors when the object has no
/// parsable BTF.
pub fn mark_char(elf: &mut [u8], int_name: &str) -> Result<usize, String> {
    for_each_int(elf, |name, data| {
        (name == int_name.as_bytes()).then_some((data & !0x0f00_0000) | (BTF_INT_CHAR << 24))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_object_has_char_names() {
        let obj = crate::loader::object();
        assert_eq!(int_encoding(obj, "i8"), Some(BTF_INT_CHAR), "i8 is a char");
        // Nothing else is: u8 arrays (answer bytes) stay numbers.
        assert_eq!(int_encoding(obj, "u8"), Some(0));
        let mut copy = obj.to_vec();
        assert_eq!(mark_char(&mut copy, "i8"), Ok(1), "idempotent, one type");
        assert_eq!(
            mark_char(&mut copy[..100], "i8").unwrap_err(),
            "no .BTF section in the object"
        );
    }
}
