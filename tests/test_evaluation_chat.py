"""`sumi eval --chat`: generation prompts as conversations through the model's chat template,
answered with its generation config (the bundled demo-instruct model, the committed fixtures)."""

import json
from pathlib import Path

import pytest

import sumi
from sumi.cli import main
from sumi.evaluation import SumiEvaluator
from sumi.evaluation.runner import evaluate_task
from sumi.evaluation.tasks import (
    extract_code,
    humaneval_chat_program,
    load_jsonl,
    load_task,
    mbpp_chat_program,
    resolve_task_names,
)

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
BENCH = FIXTURES / "benchmarks"
TASKS_DIR = FIXTURES / "lm_eval_tasks"

BOS, EOS = "<|beginoftext|>", "<|endoftext|>"


def expected_rendering(turns: list[tuple[str, str]]) -> str:
    """The default template, written out from its definition (sumi.chat_template): BOS, then per
    turn a "Role:" header line and the content (an assistant's closed by EOS), turns separated by a
    newline, then the generation prompt "Assistant:" on its own line."""
    text = BOS
    for role, content in turns:
        text += f"{role}:\n{content}" + (EOS if role == "Assistant" else "") + "\n"
    return text + "Assistant:\n"


@pytest.fixture(scope="module")
def instruct():
    return sumi.load("demo-instruct")


@pytest.fixture(scope="module")
def evaluator(instruct):
    model, tok = instruct
    return SumiEvaluator(model, tok, seed=0)


def test_zero_shot_prompt_is_one_user_turn_with_the_generation_prompt(evaluator):
    item = load_task("gsm8k", BENCH, num_fewshot=0)[0]
    question = load_jsonl(BENCH / "gsm8k_test.jsonl")[0]["question"]
    assert item.messages() == [{"role": "user", "content": f"Question: {question}"}]
    text = evaluator.chat_text(item.messages())
    assert text == expected_rendering([("User", f"Question: {question}")])
    assert text.endswith("\nAssistant:\n")  # the turn the model writes
    ids = evaluator.chat_prompt(item.messages())
    assert ids == list(evaluator.tokenizer(text, add_special_tokens=False).input_ids)
    assert ids[0] == evaluator.bos_id and evaluator.eos_id not in ids  # the markers are special tokens
    assert ids == evaluator.encode_rendered(text)


def test_few_shot_exemplars_are_alternating_user_and_assistant_turns(evaluator):
    shots = load_jsonl(BENCH / "gsm8k_fewshot_cot8.jsonl")[:3]
    question = load_jsonl(BENCH / "gsm8k_test.jsonl")[1]["question"]
    item = load_task("gsm8k", BENCH, num_fewshot=3)[1]
    roles = [m["role"] for m in item.messages()]
    assert roles == ["user", "assistant"] * 3 + ["user"]
    turns = []
    for s in shots:
        turns += [("User", f"Question: {s['question']}"), ("Assistant", s["answer"])]
    turns.append(("User", f"Question: {question}"))
    assert evaluator.chat_text(item.messages()) == expected_rendering(turns)
    assert item.chat_until == ["Question:"] and "\n\n" in item.until  # a chat answer may hold blank lines

    # MBPP: the problem and its tests as the user turn, an exemplar's code in a fenced block as the answer
    shot = load_jsonl(BENCH / "mbpp_fewshot_3shot.jsonl")[0]
    row = load_jsonl(BENCH / "mbpp_test.jsonl")[0]
    item = load_task("mbpp", BENCH, num_fewshot=1)[0]
    tests = "".join(t + "\n" for t in row["test_list"])
    assert evaluator.chat_text(item.messages()) == expected_rendering(
        [
            ("User", f"{shot['text']}\nYour code should pass these tests:\n"),
            ("Assistant", f"```python\n{shot['code']}\n```"),
            ("User", f"{row['text']}\nYour code should pass these tests:\n{tests}"),
        ]
    )


def test_humaneval_asks_for_the_function_in_a_code_block(evaluator):
    row = load_jsonl(BENCH / "humaneval.jsonl")[0]
    item = load_task("humaneval", BENCH)[0]
    (turn,) = item.messages()
    assert turn["role"] == "user" and turn["content"].endswith(f"```python\n{row['prompt'].rstrip()}\n```")
    assert item.chat_until == []  # code answers end at EOS; their code is taken from the fence


def test_chat_answers_are_graded_on_their_code():
    assert extract_code("Here:\n```python\nx = 1\n```\nDone.") == "x = 1\n"
    assert extract_code("```\ny = 2\n") == "y = 2\n"  # an unclosed block runs to the end
    assert extract_code("    return a + b\n") == "    return a + b\n"  # no fence: the whole answer
    meta = {k: load_jsonl(BENCH / "humaneval.jsonl")[0][k] for k in ("prompt", "test", "entry_point")}
    whole = "Sure.\n```python\ndef add(a, b):\n    return a + b\n```"
    body = "    return a + b\n"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    exec(humaneval_chat_program(meta, whole), {})  # the whole function after the prompt's stub
    exec(humaneval_chat_program(meta, body), {})  # a body completes the stub
    with pytest.raises(AssertionError):
        exec(humaneval_chat_program(meta, wrong), {})
    row = load_jsonl(BENCH / "mbpp_test.jsonl")[0]
    meta = {"test_list": row["test_list"], "test_setup_code": ""}
    exec(mbpp_chat_program(meta, "```python\ndef square(x):\n    return x * x\n```"), {})


def test_chat_answers_use_the_generation_config_and_only_the_options_given(instruct):
    model, tok = instruct
    gc = model.generation_config
    assert SumiEvaluator(model, tok).chat_options() == {"max_new_tokens": gc.max_new_tokens}
    given = SumiEvaluator(model, tok, num_denoising_steps=4, canvas_length=128, batch_size=3)
    assert given.chat_options() == {"num_denoising_steps": 4, "canvas_length": 128, "max_new_tokens": gc.max_new_tokens}
    assert given.chat_options(max_gen_toks=16)["max_new_tokens"] == 16  # a budget given wins
    given.set(max_gen_toks=20)
    assert given.chat_options(default_gen_toks=256)["max_new_tokens"] == 20
    old, gc.max_new_tokens = gc.max_new_tokens, None
    try:  # no budget in the generation config: the task's
        assert SumiEvaluator(model, tok).chat_options(default_gen_toks=256)["max_new_tokens"] == 256
    finally:
        gc.max_new_tokens = old


def test_sumi_eval_chat_end_to_end(tmp_path, capsys, instruct):
    gc = instruct[0].generation_config
    out = tmp_path / "chat"
    args = ["eval", "--offline", "all", "--chat", "--model", "demo-instruct", "--data-dir", str(BENCH)]
    args += ["--limit-gen", "1", "--steps", "4", "--canvas-length", "256", "--allow-code-execution"]
    assert main(args + ["--output-dir", str(out), "--log-samples", "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"gsm8k", "humaneval", "mbpp"}  # all = the generation tasks
    assert results["config"]["chat"] is True
    for name, r in results["results"].items():
        assert 0.0 <= r["metrics"][r["primary"]] <= 1.0 and r["n"] == 1, name
        chat = r["settings"]["chat"]
        assert chat["template"] == "tokenizer" and r["settings"]["num_fewshot"] == 0
        # the generation config (sampler, temperature, tokens per step, budget), the options given over it
        g = chat["generation"]
        own = (gc.sampler, gc.temperature, gc.tokens_per_step, gc.max_new_tokens)
        assert (g["sampler"], g["temperature"], g["tokens_per_step"], g["max_new_tokens"]) == own
        assert (g["num_denoising_steps"], g["canvas_length"]) == (4, 256)
        assert r["settings"]["max_gen_toks"] == gc.max_new_tokens
        sample = json.loads((out / f"samples_{name}.jsonl").read_text().splitlines()[0])
        assert isinstance(sample["completion"], str)
    assert results["results"]["mbpp"]["settings"]["until"] == []
    table = capsys.readouterr().out
    assert "| gsm8k | exact_match |" in table and "| mbpp | pass@1 |" in table
    assert (out / "results.md").read_text() == table


def test_few_shot_chat_run_through_the_python_api(evaluator):
    r = evaluate_task(evaluator, "gsm8k", BENCH, num_fewshot=2, chat=True, max_gen_toks=8)
    assert r["n"] == 2 and r["settings"]["num_fewshot"] == 2 and r["settings"]["max_gen_toks"] == 8
    assert r["settings"]["chat"]["generation"]["max_new_tokens"] == 8
    assert r["settings"]["truncated_inputs"] == 2  # 2-shot prompts overflow demo-instruct's short canvas
    assert all(isinstance(s["completion"], str) for s in r["samples"])
    with pytest.raises(ValueError, match="no chat format"):
        evaluate_task(evaluator, "piqa", BENCH, chat=True)


def test_chat_needs_a_tokenizer_and_a_generation_task(capsys):
    rc = main(["eval", "--offline", "gsm8k", "--chat", "--model", "sumi-tiny", "--data-dir", str(BENCH)])
    err = capsys.readouterr().err
    (error,) = [line for line in err.splitlines() if line.startswith("sumi: error:")]
    assert rc == 2 and "argument --chat: 'sumi-tiny' has no tokenizer" in error and "Traceback" not in err
    rc = main(["eval", "--offline", "gsm8k,piqa", "--chat", "--model", "demo-instruct", "--data-dir", str(BENCH)])
    err = capsys.readouterr().err
    assert rc == 2 and "'piqa' has no chat format" in err and "--chat" in err
    assert resolve_task_names("all", chat=True) == ["gsm8k", "humaneval", "mbpp"]


def test_a_tokenizer_without_a_template_renders_with_the_default():
    model, tok = sumi.load("demo")
    assert not tok.chat_template
    ev = SumiEvaluator(model, tok)
    assert ev.chat_template_source == "default"
    assert ev.chat_text([{"role": "user", "content": "Hi"}]) == expected_rendering([("User", "Hi")])


def test_lm_eval_chat_template_path(instruct, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    import shutil

    from sumi.evaluation.harness import SumiLM

    model, tok = instruct
    lm = SumiLM(SumiEvaluator(model, tok, seed=0), peers=_one_process())
    history = [
        {"role": "user", "content": "Q: What is 2 + 2?\nA:"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "Q: What is 3 + 3?\nA:"},
    ]
    text = lm.apply_chat_template(history)
    assert text == expected_rendering(
        [("User", history[0]["content"]), ("Assistant", "4"), ("User", history[2]["content"])]
    )
    assert lm.tok_encode(text)[0] == model.config.bos_token_id  # the rendered markers are special tokens
    assert lm.chat_template(True) == tok.chat_template and lm.tokenizer_name

    work = tmp_path / "tasks"
    shutil.copytree(TASKS_DIR, work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    seen = []
    answer = SumiEvaluator.generate_chat

    def recording(self, prompts, **kwargs):
        seen.extend(self.tokenizer.decode(p) for p in prompts)
        return answer(self, prompts, **kwargs)

    monkeypatch.setattr(SumiEvaluator, "generate_chat", recording)
    out = tmp_path / "res"
    args = ["eval", "--tasks", "sumi_fixture_gen", "--include-path", str(work), "--chat", "--num-fewshot", "1"]
    args += ["--model", "demo-instruct", "--steps", "4", "--output-dir", str(out), "--no-progress"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["chat"] is True and res["config"]["backend"] == "lm-eval"
    assert res["results"]["sumi_fixture_gen"]["metrics"]["exact_match"] in (0.0, 0.5, 1.0)
    # lm-eval rendered each question through the template, the exemplar as an earlier turn pair
    assert len(seen) == 2
    for text in seen:
        assert text.startswith(BOS + "User:\nQ: ") and text.endswith("\nA:\nAssistant:\n")
        assert text.count("User:\n") == 2 and text.count("Assistant:\n") == 2 and text.count(EOS) == 1


def _one_process():
    from sumi.distributed_inference import LaunchEnv, Peers

    return Peers(LaunchEnv())
