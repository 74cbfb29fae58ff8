"""run_with_hooks(fwd_hooks=[(name, function)]): TransformerLens' Python hooks, the slow path. A
function's result is patched in where its hook is produced, so it must give the very bits of the
GPU's own intervention doing the same thing, and a function that changes nothing the bits of a
plain run."""

import tempfile

import numpy as np
import pytest

import neoprobe
from conftest import REPO, assert_bit_identical, words_of

FIXTURES = REPO / "fixtures" / "interventions"
WORDS = words_of(FIXTURES / "words.txt")
NEURONS = [3, 17, 40]


@pytest.fixture(scope="module")
def vector():
    return np.load(FIXTURES / "vector.npy")


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """The folder every temporary file of the call goes into, to see it empty afterwards."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def zero_neurons(activation, hook):
    activation[..., NEURONS] = 0


def test_a_function_returning_its_input_changes_no_bit(model):
    seen = []

    def unchanged(activation, hook):
        seen.append((hook.name, activation.shape))
        return activation

    plain, plain_cache = model.run_with_cache(WORDS, names=["blocks.3.hook_resid_post"], pool="none")
    logits, cache = model.run_with_hooks(
        WORDS, names=["blocks.3.hook_resid_post"], pool="none", fwd_hooks=[("blocks.1.mlp.hook_post", unchanged), ("blocks.3.hook_resid_post", unchanged)]
    )
    assert_bit_identical(logits, plain, "logits")
    assert_bit_identical(cache["blocks.3.hook_resid_post"], plain_cache["blocks.3.hook_resid_post"], "the hooked value")
    longest = int(plain_cache.lengths.max())
    assert seen == [("blocks.1.mlp.hook_post", (len(WORDS), longest, model.cfg.d_mlp)), ("blocks.3.hook_resid_post", (len(WORDS), longest, model.cfg.d_model))]


def test_zeroing_neurons_equals_the_gpus_ablation(model, temp_dir):
    ablated = model.run_with_hooks(WORDS, [neoprobe.ablate("blocks.1.mlp.hook_post:3,17,40")], pool="none")

    def zeroed_copy(activation, hook):
        out = activation.copy()
        out[..., NEURONS] = 0
        return out

    # A new array returned, and the given one changed in place with None returned.
    for function in (zeroed_copy, zero_neurons):
        logits = model.run_with_hooks(WORDS, pool="none", fwd_hooks=[("blocks.1.mlp.hook_post", function)])
        assert_bit_identical(logits, ablated, function.__name__)
    assert np.abs(ablated - model(WORDS, pool="none")).max() > 1e-3, "the ablation changes the logits"
    assert not any(temp_dir.iterdir()), "the patch files are removed"


def test_adding_a_vector_equals_the_gpus_steering_to_rounding(model, vector):
    hook = "blocks.1.hook_resid_post"
    steered, steered_cache = model.run_with_hooks(WORDS, [neoprobe.steer(hook, vector, scale=4)], names=[hook], pool="none")
    logits, cache = model.run_with_hooks(WORDS, names=[hook], pool="none", fwd_hooks=[(hook, lambda activation, hook: activation + 4 * vector)])
    # Both round y + 4·v once to float32 (4·v is exact), but a GPU compiler may fuse or order the
    # kernel's arithmetic its own way: allow one unit in the last place at the hook, and for the
    # logits several times what a one-ulp change of every value at the hook moves them by.
    np.testing.assert_array_max_ulp(cache[hook], steered_cache[hook], maxulp=1)
    assert np.abs(logits - steered).max() <= 2e-6
    assert np.abs(steered - model(WORDS, pool="none")).max() > 1e-2, "the steering changes the logits"


def test_several_hooks_run_in_the_forwards_order_and_see_the_earlier_changes(model, vector):
    interventions = [neoprobe.ablate("blocks.1.mlp.hook_post:3,17,40"), neoprobe.scale("blocks.2.hook_resid_pre", 0.5)]
    expected, expected_cache = model.run_with_hooks(WORDS, interventions, names=["blocks.2.hook_resid_pre"], pool="none")
    _, before = model.run_with_hooks(WORDS, interventions[:1], names=["blocks.2.hook_resid_pre"], pool="none")
    calls = []

    def halve(activation, hook):
        calls.append(hook.name)
        assert_bit_identical(activation, before["blocks.2.hook_resid_pre"], "blocks.1's change is seen downstream")
        return activation * np.float32(0.5)

    def zero(activation, hook):
        calls.append(hook.name)
        zero_neurons(activation, hook)

    # Listed against the forward's order: run in the forward's order.
    logits, cache = model.run_with_hooks(
        WORDS, names=["blocks.2.hook_resid_pre"], pool="none", fwd_hooks=[("blocks.2.hook_resid_pre", halve), ("blocks.1.mlp.hook_post", zero)]
    )
    assert calls == ["blocks.1.mlp.hook_post", "blocks.2.hook_resid_pre"]
    assert_bit_identical(logits, expected, "logits")
    assert_bit_identical(cache["blocks.2.hook_resid_pre"], expected_cache["blocks.2.hook_resid_pre"], "the cache holds the returned value")


def test_two_functions_on_one_hook_run_in_the_order_given_after_the_interventions(model):
    hook = "blocks.1.hook_resid_post"
    expected = model.run_with_hooks(WORDS, [neoprobe.set_value(hook, 1.0, [0, 1]), neoprobe.scale(hook, 0.5, [0, 1, 2])], pool="none")
    seen = []

    def second(activation, hook):
        seen.append(activation[0, 0, :3].tolist())
        activation[..., :3] *= np.float32(0.5)

    logits = model.run_with_hooks(
        WORDS, [neoprobe.set_value(hook, 1.0, [0, 1])], pool="none",
        fwd_hooks=[(hook, lambda activation, hook: activation), (hook, second)],
    )
    assert seen[0][:2] == [1.0, 1.0], "the function sees the intervention's value"
    assert_bit_identical(logits, expected, "logits")


def test_a_pattern_and_a_filter_name_every_hook_they_match(model):
    expected = model.run_with_hooks(WORDS, [neoprobe.ablate("blocks.*.mlp.hook_post:3,17,40")], pool="last")
    every = [f"blocks.{layer}.mlp.hook_post" for layer in range(model.cfg.n_layers)]
    for name in ("blocks.*.mlp.hook_post", lambda name: name.endswith(".mlp.hook_post")):
        calls = []

        def zero(activation, hook):
            calls.append(hook.name)
            zero_neurons(activation, hook)

        logits = model.run_with_hooks(WORDS, pool="last", fwd_hooks=[(name, zero)])
        assert calls == every
        assert_bit_identical(logits, expected, f"fwd_hooks name {name}")


def test_words_text_and_tokens_give_the_same_result(model):
    text = "The cat sat on the mat"
    results = []
    for inputs in ([text], text, model.to_tokens(text)):
        lengths = []

        def zero(activation, hook):
            lengths.append(hook.lengths.tolist())
            assert hook.layer() == 1
            zero_neurons(activation, hook)

        results.append(model.run_with_hooks(inputs, pool="none", fwd_hooks=[("blocks.1.mlp.hook_post", zero)]))
        assert lengths == [[len(model.to_str_tokens(text))]]
    assert_bit_identical(results[1], results[0], "text and words")
    assert_bit_identical(results[2], results[0], "tokens and words")
    assert_bit_identical(results[0], model.run_with_hooks(text, [neoprobe.ablate("blocks.1.mlp.hook_post", NEURONS)], pool="none"), "the GPU's ablation")


def test_unequal_lengths_are_padded_for_the_function_and_the_padding_ignored(model):
    hook = "blocks.0.hook_resid_post"
    _, plain = model.run_with_cache(WORDS, names=[hook], pool="none")
    assert len(set(plain.lengths.tolist())) > 1

    def fill_padding(activation, hook):
        for i, n in enumerate(hook.lengths):
            assert not activation[i, n:].any()
        out = activation.copy()
        for i, n in enumerate(hook.lengths):
            out[i, n:] = 7.0
        return out

    assert_bit_identical(model.run_with_hooks(WORDS, pool="none", fwd_hooks=[(hook, fill_padding)]), model(WORDS, pool="none"), "logits")


def test_a_wrong_result_is_an_error_naming_the_hook_and_shape(model, temp_dir):
    shape = (len(WORDS), int(model.run_with_cache(WORDS, names=[], pool="none")[1].lengths.max()), model.cfg.d_mlp)
    short = (shape[0], 1, shape[2])
    wrong = {
        f"returned a float32 array of shape {short};": lambda activation, hook: activation[:, :1],
        f"returned a float64 array of shape {shape};": lambda activation, hook: activation.astype(np.float64),
        "returned a value of type list;": lambda activation, hook: activation.tolist(),
    }
    for what, function in wrong.items():
        with pytest.raises(ValueError) as raised:
            model.run_with_hooks(WORDS, fwd_hooks=[("blocks.1.mlp.hook_post", function)])
        message = str(raised.value)
        assert "on blocks.1.mlp.hook_post " in message and what in message and f"must return a float32 array of shape {shape}" in message, message
    assert not any(temp_dir.iterdir()), "the patch files are removed after an error"


def test_an_exception_in_a_function_is_raised_as_it_is(model, temp_dir):
    class Stop(Exception):
        pass

    def stop(activation, hook):
        raise Stop(hook.name)

    with pytest.raises(Stop, match="blocks.2.hook_resid_pre"):
        model.run_with_hooks(WORDS, fwd_hooks=[("blocks.1.mlp.hook_post", zero_neurons), ("blocks.2.hook_resid_pre", stop)])
    assert not any(temp_dir.iterdir())


def test_a_function_on_a_fused_hook_equals_the_gpus_intervention(model):
    """mlp.hook_pre (before GELU) and the embeddings: values the fused kernels never store apart."""
    for hook, gpu in [("blocks.1.mlp.hook_pre", neoprobe.set_value("blocks.1.mlp.hook_pre:3,17,40", 1.5)),
                      ("hook_embed", neoprobe.scale("hook_embed:0..8", 0.5))]:
        def change(activation, hook, name=hook):
            if name == "hook_embed":
                activation[..., :8] *= np.float32(0.5)
            else:
                activation[..., NEURONS] = np.float32(1.5)
        ours = model.run_with_hooks(WORDS, fwd_hooks=[(hook, change)], pool="none")
        theirs = model.run_with_hooks(WORDS, [gpu], pool="none")
        assert_bit_identical(ours, theirs, hook)
        assert not np.array_equal(ours, model(WORDS, pool="none")), f"changing {hook} changed nothing"


@pytest.mark.parametrize("hook", ["blocks.1.attn.hook_pattern", "logits", "blocks.1.*"])
def test_a_hook_the_gpu_cannot_change_is_the_interventions_error_before_any_work(model, hook):
    with pytest.raises(ValueError) as theirs:
        model.run_with_hooks(WORDS, [neoprobe.ablate(hook)])
    reason = str(theirs.value).split("): ", 1)[1]
    assert reason.startswith("interventions on ") and "are not supported: " in reason
    called, progress = [], []
    for name in (hook, lambda name: name == reason.split()[2]):
        with pytest.raises(ValueError) as ours:
            model.run_with_hooks(WORDS, progress=lambda done, total: progress.append(done), fwd_hooks=[
                ("blocks.0.mlp.hook_post", lambda activation, hook: called.append(hook.name)), (name, lambda activation, hook: called.append(hook.name)),
            ])
        assert str(ours.value).startswith("fwd_hooks[1] ") and str(ours.value).endswith(": " + reason), str(ours.value)
    assert called == [] and progress == [], "nothing ran"


def test_bad_fwd_hooks_entries(model):
    with pytest.raises(ValueError, match='fwd_hooks\\[0\\] "blocks.99.mlp.hook_post": hook "blocks.99.mlp.hook_post" names block 99'):
        model.run_with_hooks(WORDS, fwd_hooks=[("blocks.99.mlp.hook_post", zero_neurons)])
    with pytest.raises(ValueError, match="the filter matches no hook"):
        model.run_with_hooks(WORDS, fwd_hooks=[(lambda name: False, zero_neurons)])
    with pytest.raises(TypeError, match="list of \\(name, function\\) pairs"):
        model.run_with_hooks(WORDS, fwd_hooks=("blocks.1.mlp.hook_post", zero_neurons))
    with pytest.raises(TypeError, match="is not callable"):
        model.run_with_hooks(WORDS, fwd_hooks=[("blocks.1.mlp.hook_post", 3)])
    with pytest.raises(TypeError, match="fwd_hooks="):
        model.run_with_hooks(WORDS, [("blocks.1.mlp.hook_post", zero_neurons)])


def test_progress_counts_every_forward(model):
    seen = []
    total = sum(model.run_with_cache(WORDS, names=[], pool="none")[1].lengths)
    model.run_with_hooks(WORDS, progress=lambda done, total: seen.append((done, total)), fwd_hooks=[("blocks.*.hook_resid_pre", zero_neurons)])
    runs = model.cfg.n_layers + 1
    assert seen[-1] == (runs * total, runs * total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_warnings_are_given_once(model):
    long_text = "word " * (model.cfg.n_ctx + 10)
    with pytest.warns(neoprobe.NeoprobeWarning) as caught:
        model.run_with_hooks(long_text, return_type=None, names=["blocks.0.hook_resid_post"], fwd_hooks=[("blocks.0.hook_resid_pre", zero_neurons)])
    assert len(caught) == 1 and caught[0].filename == __file__
