//! A generated sample in the arXiv snapshot's format, for trying the whole job without a
//! download: paper-like records from clearly different fields, each written from its field's
//! own vocabulary, so a similarity query about one field finds papers of that field. The
//! records are made up; no third-party text is shipped.

use std::collections::HashMap;

use serde_json::json;

/// One field: its arXiv category and the phrases its papers are written from.
struct Field {
    category: &'static str,
    subjects: &'static [&'static str],
    methods: &'static [&'static str],
    findings: &'static [&'static str],
}

const FIELDS: &[Field] = &[
    Field {
        category: "astro-ph.GA",
        subjects: &[
            "dark matter halos",
            "spiral galaxy rotation curves",
            "galaxy cluster mergers",
            "supermassive black holes",
            "the intergalactic medium",
            "dwarf galaxy satellites",
            "stellar populations in the Milky Way bulge",
        ],
        methods: &[
            "cosmological N-body simulations",
            "deep imaging with the Hubble Space Telescope",
            "radio interferometry",
            "weak gravitational lensing maps",
            "integral field spectroscopy",
        ],
        findings: &[
            "the inner density profile is flatter than cold dark matter predicts",
            "star formation is quenched earlier in massive galaxies",
            "the halo mass function agrees with the standard cosmological model",
            "black hole accretion heats the surrounding gas",
        ],
    },
    Field {
        category: "q-bio.BM",
        subjects: &[
            "protein folding pathways",
            "enzyme active sites",
            "membrane transporter proteins",
            "antibody binding affinity",
            "intrinsically disordered proteins",
            "ribosome assembly",
            "DNA repair enzymes",
        ],
        methods: &[
            "cryo-electron microscopy",
            "molecular dynamics simulations of solvated proteins",
            "X-ray crystallography",
            "single-molecule fluorescence",
            "mutational scanning of amino acid residues",
        ],
        findings: &[
            "a folding intermediate stabilises the native structure",
            "a single residue controls substrate specificity",
            "conformational changes gate ion transport across the membrane",
            "hydrogen bonds in the binding pocket determine affinity",
        ],
    },
    Field {
        category: "cs.LG",
        subjects: &[
            "deep neural networks for image classification",
            "transformer language models",
            "reinforcement learning agents",
            "graph neural networks",
            "adversarial robustness of classifiers",
            "few-shot learning",
            "generative diffusion models",
        ],
        methods: &[
            "stochastic gradient descent with adaptive learning rates",
            "self-supervised pretraining on unlabeled data",
            "attention mechanisms",
            "knowledge distillation",
            "large-scale benchmarks on ImageNet",
        ],
        findings: &[
            "accuracy improves with model size and training data",
            "the learned representations transfer to new tasks",
            "regularisation reduces overfitting on small datasets",
            "training converges faster with warm-up schedules",
        ],
    },
    Field {
        category: "econ.GN",
        subjects: &[
            "minimum wage policy",
            "household consumption and savings",
            "central bank interest rates",
            "labor market participation",
            "international trade tariffs",
            "housing prices and mortgage credit",
            "income inequality across regions",
        ],
        methods: &[
            "difference-in-differences estimation",
            "panel data from household surveys",
            "structural macroeconomic models",
            "natural experiments in policy changes",
            "instrumental variable regressions",
        ],
        findings: &[
            "higher wages did not reduce employment in small firms",
            "monetary tightening lowers inflation expectations",
            "tariffs raised consumer prices more than expected",
            "credit supply drives house price cycles",
        ],
    },
    Field {
        category: "cond-mat.mtrl-sci",
        subjects: &[
            "lithium-ion battery cathodes",
            "perovskite solar cells",
            "high-entropy alloys",
            "two-dimensional semiconductors",
            "thermoelectric materials",
            "corrosion of steel surfaces",
            "polymer electrolytes",
        ],
        methods: &[
            "density functional theory calculations",
            "in situ X-ray diffraction",
            "transmission electron microscopy of grain boundaries",
            "high-throughput materials screening",
            "thin film deposition",
        ],
        findings: &[
            "doping increases the ionic conductivity",
            "grain boundaries limit the charge carrier lifetime",
            "the alloy keeps its strength at high temperature",
            "surface defects accelerate degradation during cycling",
        ],
    },
    Field {
        category: "physics.ao-ph",
        subjects: &[
            "Arctic sea ice decline",
            "tropical cyclone intensity",
            "monsoon rainfall variability",
            "ocean heat uptake",
            "atmospheric aerosols and clouds",
            "extreme heatwaves",
            "the El Nino Southern Oscillation",
        ],
        methods: &[
            "coupled climate model ensembles",
            "satellite observations of the atmosphere",
            "reanalysis data since 1950",
            "regional downscaling of climate projections",
            "Argo float measurements",
        ],
        findings: &[
            "warming amplifies extreme precipitation events",
            "aerosol cooling masks part of the greenhouse warming",
            "the ocean absorbs most of the excess heat",
            "sea ice loss strengthens Arctic amplification",
        ],
    },
    Field {
        category: "math.NT",
        subjects: &[
            "prime numbers in arithmetic progressions",
            "elliptic curves over the rationals",
            "modular forms",
            "the Riemann zeta function",
            "Diophantine equations",
            "class groups of number fields",
            "L-functions",
        ],
        methods: &[
            "analytic methods and sieve bounds",
            "the circle method",
            "Galois representations",
            "p-adic analysis",
            "explicit computations of rational points",
        ],
        findings: &[
            "the conjectured asymptotic formula holds on average",
            "the rank is bounded for a positive proportion of curves",
            "the zeros lie on the critical line up to a new height",
            "there are only finitely many integer solutions",
        ],
    },
    Field {
        category: "q-bio.NC",
        subjects: &[
            "hippocampal place cells",
            "working memory in prefrontal cortex",
            "synaptic plasticity",
            "visual cortex responses",
            "neural oscillations during sleep",
            "motor learning in the cerebellum",
            "dopamine reward signals",
        ],
        methods: &[
            "two-photon calcium imaging in mice",
            "electrophysiological recordings of neurons",
            "functional MRI in human subjects",
            "optogenetic stimulation",
            "spiking network models",
        ],
        findings: &[
            "neurons encode the position of the animal",
            "memory consolidation depends on replay during sleep",
            "inhibitory interneurons synchronise cortical activity",
            "reward prediction errors drive learning",
        ],
    },
];

/// Endings a title may take (most take none), so few titles are drawn twice.
const QUALIFIERS: &[&str] = &[
    "",
    "",
    "",
    "",
    ", revisited",
    " in a large sample",
    " at high resolution",
    " over two decades of data",
    ": a systematic comparison",
    " across scales",
    ": new constraints",
    " beyond the standard picture",
    ": open questions",
    " with open data",
    ": a first look",
    " in a controlled setting",
];

/// Small deterministic generator (xorshift64*), so a sample is the same for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// The arXiv categories the sample's papers are drawn from, one per field.
pub fn sample_categories() -> Vec<&'static str> {
    FIELDS.iter().map(|f| f.category).collect()
}

/// `count` records, one JSON line each, in the snapshot's format (`id`, `title`, `abstract`,
/// `categories`, `authors`, `update_date`), fields taking turns. No two share a title: a title
/// drawn again gets a part number, as a series of papers has ("..., part 2").
pub fn sample_lines(count: usize, seed: u64) -> impl Iterator<Item = String> {
    let mut rng = Rng(seed.max(1));
    let mut titles: HashMap<String, u32> = HashMap::new();
    (0..count).map(move |i| {
        let field = &FIELDS[i % FIELDS.len()];
        let subject = rng.pick(field.subjects);
        let other = loop {
            let other = rng.pick(field.subjects);
            if other != subject {
                break other;
            }
        };
        let (method, finding) = (rng.pick(field.methods), rng.pick(field.findings));
        let title = match rng.next() % 6 {
            0 => format!("On {subject}: evidence from {method}"),
            1 => format!("{} and {other}", capitalise(subject)),
            2 => format!("A study of {subject} with {method}"),
            3 => format!("{} seen through {method}", capitalise(subject)),
            4 => format!("What {method} reveals about {subject} and {other}"),
            _ => format!("{}: why {finding}", capitalise(subject)),
        };
        let title = format!("{title}{}", rng.pick(QUALIFIERS));
        let drawn = titles.entry(title.clone()).or_insert(0);
        *drawn += 1;
        let title = if *drawn == 1 {
            title
        } else {
            format!("{title}, part {drawn}")
        };
        let summary = format!(
            "We investigate {subject} using {method}. We find that {finding}. \
             These results also constrain {other}, and we discuss open questions about {subject}."
        );
        let month = 1 + rng.next() % 12;
        json!({
            "id": format!("{:02}{:02}.{:05}", 20 + i / 100_000 % 5, month, i % 100_000),
            "title": title,
            "abstract": format!("  {summary}\n"),
            "categories": field.category,
            "authors": format!("A. Author{} and B. Writer{}", rng.next() % 97, rng.next() % 89),
            "update_date": format!("2024-{month:02}-{:02}", 1 + rng.next() % 28),
        })
        .to_string()
    })
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_line;

    #[test]
    fn every_line_parses_as_a_snapshot_record() {
        for line in sample_lines(50, 7) {
            let paper = parse_line(&line).unwrap();
            assert!(paper.title.is_some() && paper.abstract_text.is_some());
            assert_eq!(paper.categories.len(), 1);
        }
    }

    #[test]
    fn fields_take_turns_and_ids_are_unique() {
        let papers: Vec<_> = sample_lines(800, 7).map(|l| parse_line(&l).unwrap()).collect();
        let categories = sample_categories();
        for (i, paper) in papers.iter().enumerate() {
            assert_eq!(paper.categories[0], categories[i % categories.len()]);
        }
        let mut ids: Vec<_> = papers.iter().map(|p| p.source_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 800);
    }

    #[test]
    fn no_two_papers_share_a_title() {
        let papers: Vec<_> = sample_lines(5000, 7).map(|l| parse_line(&l).unwrap()).collect();
        let mut titles: Vec<_> = papers.iter().map(|p| p.title.clone()).collect();
        let parts = titles
            .iter()
            .filter(|t| t.as_deref().is_some_and(|t| t.contains(", part ")))
            .count();
        titles.sort();
        titles.dedup();
        assert_eq!(titles.len(), 5000);
        // Most titles are drawn once: the part numbers are the exception.
        assert!(parts < 750, "{parts} of 5000 titles carry a part number");
    }

    #[test]
    fn the_same_seed_gives_the_same_sample() {
        assert_eq!(
            sample_lines(20, 3).collect::<Vec<_>>(),
            sample_lines(20, 3).collect::<Vec<_>>()
        );
        assert_ne!(
            sample_lines(20, 3).collect::<Vec<_>>(),
            sample_lines(20, 4).collect::<Vec<_>>()
        );
    }
}
