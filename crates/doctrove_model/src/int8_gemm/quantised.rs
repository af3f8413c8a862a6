//! The int8 operands of both kernels: weights quantised once at load (symmetric, one scale per
//! output and per group of [`GROUP`] inputs) and packed in the order the kernels read them, and
//! each layer's input rows quantised when it runs (unsigned with a zero point, one scale per row
//! and per group), padded to whole tiles of either kernel.

/// Inputs per quantisation group: four bytes per lane, sixteen lanes' worth of steps.
pub const GROUP: usize = 64;
/// Four-input steps per group.
pub(super) const QUADS_PER_GROUP: usize = GROUP / 4;
/// Rows are padded to whole tiles of the AVX-512 kernel (6 rows), which the AVX-VNNI kernel's
/// 3 divide.
pub(super) const ROW_PADDING: usize = 6;

/// One group of input values quantised: `quads` gets the bytes, four to a lane; returns the
/// scale and the zero point. One implementation per instruction set, all giving the same bytes.
pub(super) type GroupQuantiser = unsafe fn(values: &[f32], quads: &mut [u32]) -> (f32, i32);

/// A weight matrix (`outputs` x `inputs`, as stored) quantised and packed: for each block of
/// 16 outputs, for each step of four inputs, 16 lanes of the four signed bytes; and for each
/// block and group, 16 lanes of the scale and of the sum of the group's bytes (for the zero
/// point). Outputs and inputs are padded with zeros to whole blocks and groups.
pub struct PackedInt8 {
    pub(super) lanes: Vec<i32>,
    pub(super) scales: Vec<f32>,
    pub(super) sums: Vec<i32>,
    pub(super) outputs: usize,
    pub(super) inputs: usize,
    pub(super) blocks: usize,
    pub(super) groups: usize,
}

/// One group of weights quantised: the bytes and the scale (`max |w| / 127`).
pub(super) fn quantise_weights(group: &[f32]) -> (Vec<i8>, f32) {
    let most = group.iter().fold(0f32, |m, v| m.max(v.abs()));
    if most == 0.0 {
        return (vec![0; group.len()], 0.0);
    }
    let scale = most / 127.0;
    (
        group.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8).collect(),
        scale,
    )
}

impl PackedInt8 {
    pub fn pack(weight: &[f32], outputs: usize, inputs: usize) -> PackedInt8 {
        assert_eq!(weight.len(), outputs * inputs, "the weights do not fit their shape");
        let (blocks, groups) = (outputs.div_ceil(16), inputs.div_ceil(GROUP));
        let padded = groups * GROUP;
        // Each output's row, quantised group by group.
        let mut bytes = vec![0i8; blocks * 16 * padded];
        let mut scale_of = vec![0f32; blocks * 16 * groups];
        for o in 0..outputs {
            let mut row = weight[o * inputs..(o + 1) * inputs].to_vec();
            row.resize(padded, 0.0);
            for g in 0..groups {
                let (q, scale) = quantise_weights(&row[g * GROUP..(g + 1) * GROUP]);
                bytes[o * padded + g * GROUP..o * padded + (g + 1) * GROUP].copy_from_slice(&q);
                scale_of[o * groups + g] = scale;
            }
        }
        let quads = padded / 4;
        let mut lanes = Vec::with_capacity(blocks * quads * 16);
        for block in 0..blocks {
            for q in 0..quads {
                for lane in 0..16 {
                    let o = block * 16 + lane;
                    let four = &bytes[o * padded + 4 * q..o * padded + 4 * q + 4];
                    lanes.push(i32::from_le_bytes([
                        four[0] as u8,
                        four[1] as u8,
                        four[2] as u8,
                        four[3] as u8,
                    ]));
                }
            }
        }
        let (mut scales, mut sums) = (Vec::new(), Vec::new());
        for block in 0..blocks {
            for g in 0..groups {
                for lane in 0..16 {
                    let o = block * 16 + lane;
                    scales.push(scale_of[o * groups + g]);
                    let group = &bytes[o * padded + g * GROUP..o * padded + (g + 1) * GROUP];
                    sums.push(group.iter().map(|&b| i32::from(b)).sum());
                }
            }
        }
        PackedInt8 {
            lanes,
            scales,
            sums,
            outputs,
            inputs,
            blocks,
            groups,
        }
    }
}

/// `rows` rows of `x` quantised: the bytes (four to a lane), and each row's scale and zero
/// point per group; padded with zero rows to whole tiles.
pub(super) struct QuantisedRows {
    pub(super) quads: Vec<u32>,
    pub(super) scales: Vec<f32>,
    pub(super) zeros: Vec<i32>,
}

/// # Safety
/// The CPU must run `quantise_group`.
pub(super) unsafe fn quantise_rows(
    quantise_group: GroupQuantiser,
    x: &[f32],
    rows: usize,
    inputs: usize,
    groups: usize,
) -> QuantisedRows {
    let padded_rows = rows.div_ceil(ROW_PADDING) * ROW_PADDING;
    let quads_per_row = groups * QUADS_PER_GROUP;
    let mut out = QuantisedRows {
        quads: vec![0; padded_rows * quads_per_row],
        scales: vec![1.0; padded_rows * groups],
        zeros: vec![0; padded_rows * groups],
    };
    let mut row_values = vec![0f32; groups * GROUP];
    for (r, row) in x.chunks_exact(inputs).take(rows).enumerate() {
        row_values[..inputs].copy_from_slice(row);
        row_values[inputs..].fill(0.0);
        let quads = &mut out.quads[r * quads_per_row..(r + 1) * quads_per_row];
        for (g, (values, four_bytes)) in row_values
            .chunks_exact(GROUP)
            .zip(quads.chunks_exact_mut(QUADS_PER_GROUP))
            .enumerate()
        {
            // SAFETY: the caller checked the CPU's features; both slices hold one whole group.
            let (scale, zero) = unsafe { quantise_group(values, four_bytes) };
            out.scales[r * groups + g] = scale;
            out.zeros[r * groups + g] = zero;
        }
    }
    out
}
