//! Intel AMX (Advanced Matrix Extensions): whether this process may run tile products, and the
//! tile configuration the AMX kernels load. A tile is 16 rows of 64 bytes; `tdpbf16ps` multiplies
//! a 16 x 32 bfloat16 tile by a 32 x 16 one (the second in pairs, as the AVX-512 BF16 kernel
//! packs its weights) into 16 x 16 float32 sums: 8,192 multiply-adds an instruction, about 16 times
//! what AVX-512 FMAs do on the same core.
//!
//! Linux hands the tile registers' state to a process only when asked
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, once per process, before any thread
//! runs a tile instruction; without it the first one is killed with SIGILL), so [`bf16_granted`]
//! asks once and reports whether the answer was yes. Rust has no stable AMX intrinsics; the
//! kernels use its inline assembly, which the assembler accepts whatever the target features.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use std::sync::OnceLock;

/// Bytes per tile row, rows per tile and tile registers in palette 1, the only palette the
/// kernels use; the CPU's own figures are checked against these (CPUID leaf 0x1D).
pub const ROW_BYTES: usize = 64;
pub const TILE_ROWS: usize = 16;
const TILES: u32 = 8;

/// Whether the CPU has AMX-TILE and AMX-BF16 with palette 1's shape, and Linux granted this
/// process the tile state. Asked once; every later call gives the first answer.
pub fn bf16_granted() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static GRANTED: OnceLock<bool> = OnceLock::new();
        *GRANTED.get_or_init(|| cpu_has_amx_bf16() && palette_is_as_expected() && request_tile_state())
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::{__cpuid_count, __get_cpuid_max};
    // Leaf 7 is read only when the CPU has it.
    if __get_cpuid_max(0).0 < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    let (amx_bf16, amx_tile) = (edx & (1 << 22) != 0, edx & (1 << 24) != 0);
    amx_bf16 && amx_tile && is_x86_feature_detected!("avx512f")
}

/// Palette 1 has 8 tiles of 16 rows of 64 bytes (CPUID leaf 0x1D, subleaf 1).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn palette_is_as_expected() -> bool {
    use std::arch::x86_64::{__cpuid_count, __get_cpuid_max};
    // Leaf 0x1D is read only when the CPU has it.
    if __get_cpuid_max(0).0 < 0x1d || __cpuid_count(0x1d, 0).eax < 1 {
        return false;
    }
    let palette = __cpuid_count(0x1d, 1);
    palette.ebx & 0xffff == ROW_BYTES as u32 && palette.ebx >> 16 >= TILES && palette.ecx & 0xffff >= TILE_ROWS as u32
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: whether Linux granted the tile state
/// (not on kernels before 5.16, under a seccomp filter that refuses it, or when a thread's
/// signal stack is too small for the tile state).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: the call takes two integers and changes only this process's permitted state.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

/// `asm!` for code that uses the tile registers: the given templates and operands (no trailing
/// comma), with every tile register declared clobbered and `nostack`. Tile values live only
/// inside one such block; Rust code between blocks never sees them.
macro_rules! tile_asm {
    ($($args:tt)*) => {
        std::arch::asm!(
            $($args)*,
            out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
            out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
            options(nostack)
        )
    };
}
pub(crate) use tile_asm;

/// A tile configuration as `ldtilecfg` reads it: palette 1, each tile's rows and bytes per row.
#[repr(C, align(64))]
pub struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// Every one of the 8 tiles at 16 rows of 64 bytes.
    pub fn all_full() -> TileConfig {
        let mut config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        for tile in 0..TILES as usize {
            config.bytes_per_row[tile] = ROW_BYTES as u16;
            config.rows[tile] = TILE_ROWS as u8;
        }
        config
    }

    /// Loads the configuration on this thread, runs `body`, then releases the tiles (so the
    /// thread's saved state stays small between products), also if `body` panics. The tile
    /// registers' values live only inside single [`tile_asm`] blocks of `body`.
    ///
    /// # Safety
    /// [`bf16_granted`] must have returned true, and `body` must not call `with_tiles` (the inner
    /// release would end the outer configuration).
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn with_tiles<R>(&self, body: impl FnOnce() -> R) -> R {
        /// Releases the tiles when dropped.
        struct Release;
        impl Drop for Release {
            fn drop(&mut self) {
                // SAFETY: the tiles were configured by this thread (below).
                unsafe { tile_asm!("tilerelease", options(nomem)) }
            }
        }
        tile_asm!("ldtilecfg [{0}]", in(reg) self as *const TileConfig, options(readonly));
        let _release = Release;
        body()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_the_64_bytes_ldtilecfg_reads() {
        assert_eq!(std::mem::size_of::<TileConfig>(), 64);
        let config = TileConfig::all_full();
        // SAFETY: a plain-data struct of 64 bytes read as bytes.
        let bytes: [u8; 64] = unsafe { std::mem::transmute(config) };
        assert_eq!(bytes[0], 1, "palette 1");
        assert_eq!(&bytes[16..18], &[64, 0], "tile 0's bytes per row, little-endian");
        assert_eq!(&bytes[30..32], &[64, 0], "tile 7's");
        assert_eq!(&bytes[32..34], &[0, 0], "tile 8 unused");
        assert_eq!(&bytes[48..56], &[16; 8], "rows of tiles 0 to 7");
        assert_eq!(bytes[56], 0);
    }

    #[test]
    fn asking_twice_gives_the_same_answer() {
        assert_eq!(bf16_granted(), bf16_granted());
        if !bf16_granted() {
            eprintln!("no AMX BF16 granted here: the tile kernels are not run");
        }
    }
}
