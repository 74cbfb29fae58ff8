//! `neoprobe verify`: this adapter's results against an f64 reference of the same weights.

use super::model_args::ModelArgs;
use super::terminal::Terminal;
use clap::{Args, ValueEnum};
use neoprobe::hub::FetchOptions;
use neoprobe::kernels::Variant;
use neoprobe::verify;

#[derive(Args)]
pub struct VerifyCli {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A kernel variant to check, repeatable [default: every one this adapter runs].
    #[arg(long = "kernel-variant", value_enum, value_name = "VARIANT")]
    pub variants: Vec<Variant>,
    /// Print the report as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Compile a deliberate error into the kernels (to see the checks fail).
    #[arg(long, value_enum, hide = true)]
    pub inject_fault: Option<FaultKind>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FaultKind {
    Linear,
    Attention,
    Layernorm,
}

pub fn run(args: VerifyCli) -> anyhow::Result<()> {
    let notes = Terminal::new();
    // A relative error far above rounding and far below what any real bug does.
    let amount = 1.0 / 1024.0;
    let faults = match args.inject_fault {
        None => neoprobe::kernels::Faults::default(),
        Some(FaultKind::Linear) => neoprobe::kernels::Faults { linear: amount, ..Default::default() },
        Some(FaultKind::Attention) => neoprobe::kernels::Faults { attention: amount, ..Default::default() },
        Some(FaultKind::Layernorm) => neoprobe::kernels::Faults { layernorm: amount, ..Default::default() },
    };
    let report = verify::verify(
        &verify::VerifyArgs {
            model: args.model.source(),
            fetch: FetchOptions::default(),
            variants: args.variants,
            faults,
        },
        &notes,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", verify::render(&report));
    }
    if !report.pass {
        let failed = report.checks.iter().filter(|c| c.pass == Some(false)).count();
        anyhow::bail!("verification failed: {failed} checks failed on {}", report.adapter);
    }
    Ok(())
}
