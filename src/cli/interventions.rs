//! The intervention flags every command that runs a forward takes (grammar: src/model/intervene.rs).

use clap::Args;
use neoprobe::model::InterventionKind;

#[derive(Args, Default)]
#[command(
    next_help_heading = "Interventions (the hook's value is changed before anything downstream reads it)"
)]
pub struct InterventionArgs {
    /// Zero a hook's values: HOOK[@POSITIONS][:COLUMNS], e.g. blocks.8.mlp.hook_post:2362,75 or
    /// blocks.5.attn.hook_z:head=3. POSITIONS: P,P (inside each sequence; -1 is the last);
    /// COLUMNS: C, A..B or head=H. Repeatable, as is every intervention flag.
    #[arg(long, value_name = "TARGET")]
    pub ablate: Vec<String>,
    /// Replace with per-column means: TARGET=FILE (.npy or .safetensors, [width] or [n, width]:
    /// the mean of its rows, e.g. an `extract --pool mean` of reference inputs).
    #[arg(long, value_name = "TARGET=FILE")]
    pub mean_ablate: Vec<String>,
    /// Set to a constant: TARGET=VALUE.
    #[arg(long, value_name = "TARGET=VALUE")]
    pub set: Vec<String>,
    /// Multiply by a factor: TARGET=FACTOR.
    #[arg(long, value_name = "TARGET=FACTOR")]
    pub scale: Vec<String>,
    /// Add SCALE × a vector at every chosen position (steering): TARGET=FILE[*SCALE], FILE
    /// holding [width] values.
    #[arg(long, value_name = "TARGET=FILE[*SCALE]")]
    pub steer: Vec<String>,
    /// Take the values from another run of inputs that tokenize to the same lengths:
    /// TARGET=FILE, an `extract --pool none` output of that hook.
    #[arg(long, value_name = "TARGET=FILE")]
    pub patch: Vec<String>,
}

impl InterventionArgs {
    /// Every flag given, as (kind, text), in the order of the kinds.
    pub fn specs(self) -> Vec<(InterventionKind, String)> {
        let kinds = [
            (InterventionKind::Ablate, self.ablate),
            (InterventionKind::MeanAblate, self.mean_ablate),
            (InterventionKind::Set, self.set),
            (InterventionKind::Scale, self.scale),
            (InterventionKind::Steer, self.steer),
            (InterventionKind::Patch, self.patch),
        ];
        kinds.into_iter().flat_map(|(kind, texts)| texts.into_iter().map(move |t| (kind, t))).collect()
    }
}
