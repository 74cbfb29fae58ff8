//! The challenge's causal test: a run resumed at block L from the clean residual stream, with
//! the logits at last tokens only, gives the very logits of a whole forward with the same
//! ablation (so HF's agreement with ablated forwards, tests/interventions.rs, carries over), and
//! each word's effect is the KL of those logits against the clean ones.

use neoprobe::challenge::causal::random_sets;
use neoprobe::challenge::{run_challenge, Ablation, CategorySpec, CausalArgs, ChallengeArgs};
use neoprobe::engine::{Engine, LoadedModel, ModelSource};
use neoprobe::hub::FetchOptions;
use neoprobe::model::{
    Batch, Hook, HookPlan, HookPoint, Intervention, InterventionKind, Interventions, ModelDir, Resume,
};
use neoprobe::notes::Silent;
use neoprobe::pool::Pool;
use std::fs;
use std::path::PathBuf;

const MODEL: &str = "fixtures/tiny-neo";
const LAYER: usize = 8;
const WORDS: [&str; 6] = ["dog", "running", "house", "promote", "beautifully", "she"];

fn engine() -> (Engine, LoadedModel) {
    let dir = ModelDir::open(&PathBuf::from(MODEL)).unwrap();
    let (model, _) = LoadedModel::load(&dir, |_| HookPlan::new(&[Hook::Logits])).unwrap();
    let engine = Engine::new(&model.weights, None, model.load_time).unwrap();
    (engine, model)
}

fn batch(model: &LoadedModel, words: &[&str]) -> Batch {
    let ids: Vec<Vec<u32>> = words.iter().map(|w| model.tokenizer.encode_word(w, false).unwrap()).collect();
    Batch::pack(&ids, model.config.max_position_embeddings).unwrap()
}

fn ablation(spec: &str, model: &LoadedModel) -> Interventions {
    Interventions::new(Intervention::parse(InterventionKind::Ablate, spec, &model.config).unwrap())
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Each sequence's last row of `[tokens, width]` rows.
fn last_rows(rows: &[f32], batch: &Batch, width: usize) -> Vec<f32> {
    (0..batch.n_sequences())
        .flat_map(|s| {
            let t = batch.sequence(s).end - 1;
            rows[t * width..(t + 1) * width].to_vec()
        })
        .collect()
}

#[test]
fn a_resumed_ablated_run_is_the_whole_ablated_forward_bit_for_bit() {
    let (engine, model) = engine();
    let batch = batch(&model, &WORDS);
    let vocab = model.config.vocab_size;
    let ablate = ablation("blocks.8.mlp.hook_post:3,17,40,200", &model);

    // The whole forward with the ablation, every token's logits.
    let whole = HookPlan::new(&[Hook::Logits]).unwrap().with_interventions(ablate.clone());
    let (mut acts, _) = engine.forward(&batch, &whole, false).unwrap();
    let every = acts.take(Hook::Logits).unwrap();
    let expected = last_rows(&every, &batch, vocab);

    // The logits at last tokens only: the same rows.
    let last =
        HookPlan::new(&[Hook::Logits]).unwrap().with_last_token_logits().with_interventions(ablate.clone());
    let (mut acts, _) = engine.forward(&batch, &last, false).unwrap();
    assert_eq!(acts.shape(Hook::Logits).unwrap(), [WORDS.len(), vocab]);
    assert_eq!(bits(&acts.take(Hook::Logits).unwrap()), bits(&expected));

    // Resumed at block 8 from the clean run's residual stream: the same rows again.
    let resid_hook = Hook::block(LAYER, HookPoint::ResidPre);
    let (mut clean, _) = engine.forward(&batch, &HookPlan::new(&[resid_hook]).unwrap(), false).unwrap();
    let resid = clean.take(resid_hook).unwrap();
    let resume = Resume { layer: LAYER, resid: &resid };
    let (mut acts, _) = engine.forward_from(&batch, &last, &resume).unwrap();
    assert_eq!(bits(&acts.take(Hook::Logits).unwrap()), bits(&expected));

    // And the ablation changed them: the test compares something.
    let (mut plain, _) = engine.forward(&batch, &HookPlan::new(&[Hook::Logits]).unwrap(), false).unwrap();
    assert_ne!(bits(&last_rows(&plain.take(Hook::Logits).unwrap(), &batch, vocab)), bits(&expected));
}

fn error_of<T>(result: anyhow::Result<T>) -> String {
    match result {
        Ok(_) => panic!("the resumed run was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_resumed_run_refuses_what_lies_before_its_block() {
    let (engine, model) = engine();
    let batch = batch(&model, &WORDS[..2]);
    let resid = vec![0.0; batch.n_tokens() * model.config.hidden_size];
    let resume = Resume { layer: LAYER, resid: &resid };
    let early = HookPlan::new(&[Hook::block(3, HookPoint::MlpPost), Hook::Logits]).unwrap();
    let err = error_of(engine.forward_from(&batch, &early, &resume));
    assert!(err.contains("cannot read or change blocks.3.mlp.hook_post, which comes before it"), "{err}");
    let changed = HookPlan::new(&[Hook::Logits])
        .unwrap()
        .with_interventions(ablation("blocks.2.hook_resid_post", &model));
    let err = error_of(engine.forward_from(&batch, &changed, &resume));
    assert!(err.contains("cannot read or change blocks.2.hook_resid_post"), "{err}");
    let short = Resume { layer: LAYER, resid: &resid[1..] };
    let err = error_of(engine.forward_from(&batch, &HookPlan::new(&[Hook::Logits]).unwrap(), &short));
    assert!(err.contains("residual values"), "{err}");
}

/// KL(p ‖ q) of two logit rows, in f64, from scratch.
fn kl(p: &[f32], q: &[f32]) -> f64 {
    let log_softmax = |row: &[f32]| {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        row.iter().map(|&x| x as f64 - lse).collect::<Vec<f64>>()
    };
    let (lp, lq) = (log_softmax(p), log_softmax(q));
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
}

#[test]
fn each_words_effect_is_the_kl_of_a_whole_ablated_forward() {
    let cwd = tempfile::tempdir().unwrap();
    let lists = [("motion", &WORDS[..3]), ("other", &WORDS[3..])];
    let mut categories = Vec::new();
    for (name, words) in lists {
        let file = cwd.path().join(format!("{name}.txt"));
        fs::write(&file, words.join("\n")).unwrap();
        categories.push(CategorySpec::parse(&format!("{name}={}", file.display())).unwrap());
    }
    let (engine, model) = engine();
    let all = batch(&model, &WORDS);
    let vocab = model.config.vocab_size;
    let logits = |interventions: Interventions| {
        let plan = HookPlan::new(&[Hook::Logits]).unwrap().with_interventions(interventions);
        let (mut acts, _) = engine.forward(&all, &plan, false).unwrap();
        last_rows(&acts.take(Hook::Logits).unwrap(), &all, vocab)
    };
    let clean = logits(Interventions::default());
    let row = |rows: &[f32], w: usize| rows[w * vocab..(w + 1) * vocab].to_vec();

    for ablation_kind in [Ablation::Zero, Ablation::Mean] {
        let args = ChallengeArgs {
            model: ModelSource::Dir(MODEL.into()),
            categories: categories.clone(),
            layer: LAYER,
            pool: Pool::Mean,
            prefix_space: false,
            out_dir: cwd.path().join(format!("out-{ablation_kind}")),
            force: false,
            variant: None,
            fetch: FetchOptions::default(),
            batch_tokens: None,
            permutations: 0,
            seed: 7,
            sweeps: vec![],
            causal: Some(CausalArgs { n_neurons: 4, random_sets: Some(3), ablation: ablation_kind }),
        };
        let outcome = run_challenge(&args, &Silent).unwrap();
        let test = outcome.summary.causal.as_ref().expect("the causal test ran").test.clone();
        assert_eq!(test.words, WORDS);
        assert_eq!(test.random.len(), 3);
        assert!(outcome.files.iter().any(|f| f.ends_with("causal.png")));

        // The neurons' mean over every token of the words, for mean ablation.
        let post_hook = Hook::block(LAYER, HookPoint::MlpPost);
        let (mut acts, _) = engine.forward(&all, &HookPlan::new(&[post_hook]).unwrap(), false).unwrap();
        let post = acts.take(post_hook).unwrap();
        let width = post.len() / all.n_tokens();
        let means: Vec<f32> = (0..width)
            .map(|c| {
                (post.iter().skip(c).step_by(width).map(|&v| v as f64).sum::<f64>() / all.n_tokens() as f64)
                    as f32
            })
            .collect();
        let means_file = cwd.path().join("means.npy");
        neoprobe::output::write_array(&means_file, &[width], &means, &Default::default()).unwrap();

        let random = random_sets(width, 4, 3, 7);
        let checks = [
            (&test.sets[0].neurons, &test.sets[0].word_effects),
            (&test.sets[1].neurons, &test.sets[1].word_effects),
        ];
        for (neurons, effects) in checks {
            let columns: Vec<String> = neurons.iter().map(usize::to_string).collect();
            let target = format!("blocks.8.mlp.hook_post:{}", columns.join(","));
            let interventions = match ablation_kind {
                Ablation::Zero => ablation(&target, &model),
                Ablation::Mean => Interventions::new(
                    Intervention::parse(
                        InterventionKind::MeanAblate,
                        &format!("{target}={}", means_file.display()),
                        &model.config,
                    )
                    .unwrap(),
                ),
            };
            let ablated = logits(interventions);
            for (w, &effect) in effects.iter().enumerate() {
                let expected = kl(&row(&clean, w), &row(&ablated, w));
                assert!(
                    (effect - expected).abs() <= 1e-6 * expected.abs() + 1e-12,
                    "{ablation_kind} {target}, word {}: {effect} vs {expected}",
                    WORDS[w]
                );
                assert!(expected > 0.0, "ablating {target} changed nothing for {}", WORDS[w]);
            }
        }
        // The random sets are drawn as documented, and each set's mean effect per category is
        // the mean of its words' effects.
        let set = &test.sets[0];
        assert_eq!(set.effects[0], set.word_effects[..3].iter().sum::<f64>() / 3.0);
        assert_eq!(set.difference, set.effects[0] - set.effects[1]);
        let p = set.p_value.unwrap();
        assert!([0.25, 0.5, 0.75, 1.0].contains(&p), "{p}");
        if ablation_kind == Ablation::Zero {
            let columns: Vec<String> = random[1].iter().map(usize::to_string).collect();
            let ablated = logits(ablation(&format!("blocks.8.mlp.hook_post:{}", columns.join(",")), &model));
            let effects: Vec<f64> =
                (0..WORDS.len()).map(|w| kl(&row(&clean, w), &row(&ablated, w))).collect();
            for (c, range) in [(0, 0..3), (1, 3..6)] {
                let expected = effects[range].iter().sum::<f64>() / 3.0;
                let got = test.random[1][c];
                assert!(
                    (got - expected).abs() <= 1e-6 * expected,
                    "random set 1, category {c}: {got} vs {expected}"
                );
            }
        }
    }
}
