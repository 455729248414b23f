"""Judge rubrics (load, validate, render), judgment parsing, the heuristic judge and backend construction. No network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from modelwatch.embeddings import embed_texts
from modelwatch.judge.backends import backend_from_settings
from modelwatch.judge.calls import JudgeItem, Secret
from modelwatch.judge.heuristic import HeuristicJudge, language_mismatch, looks_truncated, repetition_share
from modelwatch.judge.llm import AnthropicJudge, OpenAICompatibleJudge
from modelwatch.judge.rubric import RUBRICS_DIR, JudgmentParseError, RubricError, load_rubric, parse_judgment, parse_rubric, rubric_hash

KEY = "sk-unit-secret-7f3a"
PROMPT = "How do I reset my password?"


@pytest.fixture(scope="module")
def rubric():
    return load_rubric("support-v2")


def rubric_data() -> dict:
    return yaml.safe_load((RUBRICS_DIR / "support-v2.yaml").read_text())


def valid_answer(**changes) -> dict:
    answer = {"scores": {"helpfulness": 4, "factual_accuracy": 5, "coherence": 3, "instruction_following": 2},
              "flags": {"hallucination": False, "refusal": False, "toxicity": True}, "reasoning": "ok"}
    for path, value in changes.items():
        section, _, key = path.partition("__")
        if key:
            if value is None:
                answer[section].pop(key)
            else:
                answer[section][key] = value
        elif value is None:
            answer.pop(section)
        else:
            answer[section] = value
    return answer


# -- rubrics -----------------------------------------------------------------------------------------------


def test_bundled_rubrics_load_with_the_four_dimensions_and_three_flags():
    for name in ("support-v2", "default"):
        rubric = load_rubric(name)
        assert rubric.name == name
        assert list(rubric.dimensions) == ["helpfulness", "factual_accuracy", "coherence", "instruction_following"]
        assert list(rubric.flags) == ["hallucination", "refusal", "toxicity"]
        assert all((d.scale.min, d.scale.max) == (1, 5) for d in rubric.dimensions.values())
    assert rubric_hash(load_rubric("support-v2")) == rubric_hash(load_rubric("support-v2"))
    assert rubric_hash(load_rubric("support-v2")) != rubric_hash(load_rubric("default"))


def test_rubric_hash_changes_with_any_edit_not_only_the_version():
    data = rubric_data()
    before = rubric_hash(parse_rubric(data))
    data["dimensions"]["coherence"]["description"] += " Also judge tone."
    assert rubric_hash(parse_rubric(data)) != before


def test_rubric_errors_name_the_file_and_every_key_path(tmp_path):
    data = rubric_data()
    data["dimensions"]["coherence"]["scale"] = {"min": 4, "max": 2}
    data["flags"]["toxicity"] = {"desc": "typo"}
    data["template"] = "${prompt} ${answer}"
    data["colour"] = "blue"
    path = tmp_path / "support-v2.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RubricError) as info:
        load_rubric(str(path))
    message = str(info.value)
    assert str(path) in message
    assert "dimensions.coherence.scale: min (4) must be below max (2)" in message
    assert "flags.toxicity.desc: unknown key" in message
    assert "flags.toxicity.description: Field required" in message
    assert "template: unknown placeholder(s) ${answer}" in message and "missing placeholder(s) ${response}" in message
    assert "colour: unknown key" in message


def test_output_schema_must_agree_with_dimensions_and_flags():
    data = rubric_data()
    data["dimensions"]["helpfulness"]["scale"]["max"] = 4
    data["dimensions"]["helpfulness"]["anchors"].pop(5)
    data["flags"]["off_topic"] = {"description": "answers another question"}
    with pytest.raises(RubricError) as info:
        parse_rubric(data, "x.yaml")
    problems = info.value.problems
    assert "output_schema.properties.scores.properties.helpfulness.maximum: 5, expected 4" in problems
    assert any(p.startswith("output_schema.properties.flags.properties.off_topic: missing") for p in problems)
    data.pop("output_schema")  # without one, the schema is derived and agrees by construction
    derived = parse_rubric(data).json_schema["properties"]
    assert derived["scores"]["properties"]["helpfulness"] == {"type": "integer", "minimum": 1, "maximum": 4}
    assert "off_topic" in derived["flags"]["required"]


def test_rubric_name_must_match_its_file_and_unknown_names_list_the_known(tmp_path):
    (tmp_path / "copy.yaml").write_text((RUBRICS_DIR / "support-v2.yaml").read_text())
    with pytest.raises(RubricError, match="name: 'support-v2' differs from the file name 'copy'"):
        load_rubric("copy", directory=tmp_path)
    with pytest.raises(RubricError, match="known rubrics: .*support-v2"):
        load_rubric("support-v9")
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    with pytest.raises(RubricError, match="not valid YAML"):
        load_rubric("broken", directory=tmp_path)


def test_prompt_renders_rubric_schema_and_item_literally(rubric):
    system, user = rubric.prompt("What does the Pro plan cost?", "It costs $20 a month. ${prompt} $reference", reference="$25 a month.")
    for key, dim in rubric.dimensions.items():
        assert f"- {key} (1-5): {dim.description}" in system
    schema_line = next(line for line in system.splitlines() if line.startswith("{"))
    assert json.loads(schema_line) == rubric.json_schema
    assert "It costs $20 a month. ${prompt} $reference" in user  # item text is data, never a template
    assert "<reference_answer>\n$25 a month.\n</reference_answer>" in user
    _, without = rubric.prompt("q", "a")
    assert "<reference_answer>" not in without and rubric.no_reference in without


# -- parsing judgments -------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    lambda s: f"```json\n{s}\n```",
    lambda s: f"Sure. My notes {{brief}} first.\n\n{s}\n\nHope this helps!",
    lambda s: f"Here you go:\n```\n{s}\n```",
])
def test_parse_tolerates_fences_and_prose(rubric, wrap):
    judgment = parse_judgment(wrap(json.dumps(valid_answer())), rubric)
    assert judgment.scores == {"helpfulness": 4, "factual_accuracy": 5, "coherence": 3, "instruction_following": 2}
    assert judgment.flags["toxicity"] is True and judgment.reasoning == "ok"


def test_parse_accepts_integral_floats_and_ignores_extra_top_level_keys(rubric):
    answer = valid_answer(scores__coherence=3.0)
    answer["confidence"] = "high"
    judgment = parse_judgment(json.dumps(answer), rubric)
    assert judgment.scores["coherence"] == 3 and isinstance(judgment.scores["coherence"], int)


@pytest.mark.parametrize(("text", "problem"), [
    (json.dumps(valid_answer(scores__coherence=None)), "scores.coherence: missing"),
    (json.dumps(valid_answer(scores__helpfulness=6)), "scores.helpfulness: 6 is outside the scale 1-5"),
    (json.dumps(valid_answer(scores__helpfulness=0)), "scores.helpfulness: 0 is outside the scale 1-5"),
    (json.dumps(valid_answer(scores__helpfulness=3.5)), "scores.helpfulness: must be an integer, got 3.5"),
    (json.dumps(valid_answer(scores__helpfulness="4")), 'scores.helpfulness: must be an integer, got "4"'),
    (json.dumps(valid_answer(scores__helpfulness=True)), "scores.helpfulness: must be an integer, got true"),
    (json.dumps(valid_answer(scores__politeness=5)), "scores.politeness: not a dimension of rubric support-v2"),
    (json.dumps(valid_answer(flags__refusal="no")), 'flags.refusal: must be true or false, got "no"'),
    (json.dumps(valid_answer(flags__toxicity=None)), "flags.toxicity: missing"),
    (json.dumps(valid_answer(reasoning=None)), "reasoning: Field required"),
    (json.dumps(valid_answer())[:60], "no JSON object found"),
    ("[1, 2, 3]", "the answer is a JSON list, expected an object"),
    ("   ", "the answer is empty"),
    ("I would rate it four out of five.", "no JSON object found in the answer"),
])
def test_parse_rejects_invalid_judgments_saying_what_is_wrong(rubric, text, problem):
    with pytest.raises(JudgmentParseError) as info:
        parse_judgment(text, rubric)
    assert any(problem in p for p in info.value.problems), info.value.problems


# -- text checks (no model) --------------------------------------------------------------------------------


def test_text_checks():
    assert looks_truncated("To reset your password, open the login page and then choose the option called")
    assert looks_truncated("Here are the steps:")
    assert looks_truncated("Run this:\n```bash\nreset --user me\n")
    assert not looks_truncated("To reset your password, open the login page and choose Forgot password.")
    assert not looks_truncated("Steps to follow now:\n- open the login page\n- choose Forgot password and wait for the email")
    assert not looks_truncated("Thanks for reaching out")
    assert language_mismatch(PROMPT, "Para restablecer su contraseña, vaya a la página de inicio y haga clic en el enlace.")
    assert language_mismatch(PROMPT, "Чтобы сбросить пароль, откройте страницу входа.")
    assert language_mismatch(PROMPT, "Open the login page and choose Forgot password to get a reset link.") is None
    assert repetition_share("one two three four five six") == 0.0
    assert repetition_share("reset it now " * 10) > 0.5


# -- the heuristic judge -----------------------------------------------------------------------------------


class CountingEmbed:
    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return embed_texts(texts)


@pytest.fixture(scope="module")
def heuristic():
    return HeuristicJudge(embed=CountingEmbed())


def judge_one(judge: HeuristicJudge, rubric, response: str, prompt: str = PROMPT, reference: str | None = None):
    call = judge.judge(JudgeItem("x", prompt, response, reference), rubric)
    assert call.ok and call.cost_usd == 0 and call.confidence == 0.5
    return call.judgment


def test_heuristic_flags_refusals_and_caps_their_helpfulness(heuristic, rubric):
    refusal = judge_one(heuristic, rubric, "I'm sorry, but I can't help with that.")
    answer = judge_one(heuristic, rubric, "Open the login page, choose Forgot password and follow the link we email you.")
    assert refusal.flags["refusal"] and not answer.flags["refusal"]
    assert refusal.scores["helpfulness"] <= 2 < answer.scores["helpfulness"]
    assert "factual_accuracy" in refusal.not_assessed  # a refusal makes no claims


def test_heuristic_flags_toxic_responses(heuristic, rubric):
    toxic = judge_one(heuristic, rubric, "Figure it out yourself, you stupid idiot.")
    polite = judge_one(heuristic, rubric, "Happy to help! Open the login page and choose Forgot password.")
    assert toxic.flags["toxicity"] and not polite.flags["toxicity"]
    assert "profanity probability" in toxic.reasoning


def test_heuristic_scores_a_relevant_answer_above_an_unrelated_one(heuristic, rubric):
    relevant = judge_one(heuristic, rubric, "Go to Settings > Security and click Reset password; we email you a reset link.")
    unrelated = judge_one(heuristic, rubric, "Our bakery opens at 9am on Saturdays and sells fresh sourdough.")
    assert relevant.scores["helpfulness"] >= unrelated.scores["helpfulness"] + 2
    assert "prompt-response cosine" in relevant.reasoning and relevant.reasoning.startswith("heuristic judge (not an LLM)")


def test_heuristic_uses_the_reference_when_present_and_marks_it_not_assessed_otherwise(heuristic, rubric):
    reference = "Use the Forgot password link on the login page; the emailed link is valid for 30 minutes."
    close = judge_one(heuristic, rubric, "Click Forgot password on the login page; the link in the email works for 30 minutes.",
                      reference=reference)
    far = judge_one(heuristic, rubric, "Call our phone line and an agent will post you a new password by letter.", reference=reference)
    wrong_number = judge_one(heuristic, rubric, "Click Forgot password on the login page; the link in the email works for 45 minutes.",
                             reference=reference)
    unreferenced = judge_one(heuristic, rubric, "Click Forgot password on the login page.")
    assert "factual_accuracy" not in close.not_assessed and "hallucination" not in close.not_assessed
    assert close.scores["factual_accuracy"] > far.scores["factual_accuracy"]
    assert not close.flags["hallucination"]
    assert wrong_number.flags["hallucination"] and "numbers not in the reference: ['45']" in wrong_number.reasoning
    assert wrong_number.scores["factual_accuracy"] < close.scores["factual_accuracy"]
    assert {"factual_accuracy", "hallucination"} <= set(unreferenced.not_assessed)
    assert unreferenced.scores["factual_accuracy"] == 3 and "factual_accuracy" not in unreferenced.assessed_scores()


def test_heuristic_instruction_following_and_coherence_checks(heuristic, rubric):
    clean = judge_one(heuristic, rubric, "Open the login page and choose Forgot password. We email you a link.")
    truncated = judge_one(heuristic, rubric, "Open the login page and choose Forgot password, then wait for the email and click the")
    spanish = judge_one(heuristic, rubric, "Abra la página de inicio de sesión y elija olvidé mi contraseña para recibir un enlace.")
    no_json = judge_one(heuristic, rubric, "Your order shipped yesterday.", prompt="Give me my order status as JSON.")
    repeated = judge_one(heuristic, rubric, "Reset your password now. " * 12)
    empty = judge_one(heuristic, rubric, "   ")
    assert clean.scores["instruction_following"] == 5 and clean.scores["coherence"] == 5
    for worse, why in ((truncated, "cut off"), (spanish, "answered in 'es'"), (no_json, "JSON asked for")):
        assert worse.scores["instruction_following"] <= 3 and why in worse.reasoning
    assert repeated.scores["coherence"] <= 3 and "trigrams repeated" in repeated.reasoning
    assert empty.scores == {"helpfulness": 1, "factual_accuracy": 3, "coherence": 1, "instruction_following": 1}


def test_heuristic_batches_embeddings_and_agrees_with_single_calls(rubric):
    embed = CountingEmbed()
    judge = HeuristicJudge(embed=embed)
    items = [JudgeItem(str(i), PROMPT, r) for i, r in enumerate(["Use Forgot password.", "We open at nine.", "I can't help with that."])]
    batch = judge.judge_many(items, rubric)
    assert len(embed.calls) == 1 and sorted(embed.calls[0]) == sorted({PROMPT, *(i.response for i in items)})
    singles = [judge.judge(item, rubric) for item in items]
    assert [c.judgment.scores for c in batch] == [c.judgment.scores for c in singles]
    assert [c.judgment.flags for c in batch] == [c.judgment.flags for c in singles]


def test_heuristic_maps_onto_other_scales_and_refuses_unknown_dimensions(heuristic):
    data = rubric_data()
    data.pop("output_schema")
    for dim in data["dimensions"].values():
        dim["scale"] = {"min": 0, "max": 10}
        dim["anchors"] = {}
    ten = parse_rubric(data)
    judgment = judge_one(heuristic, ten, "   ")
    assert judgment.scores["helpfulness"] == 0 and judgment.scores["factual_accuracy"] == 5  # 1 -> 0, the midpoint 3 -> 5
    data["dimensions"]["empathy"] = {"description": "warm tone"}
    with pytest.raises(ValueError, match=r"cannot assess \['empathy'\]"):
        heuristic.judge(JudgeItem("x", PROMPT, "hi"), parse_rubric(data))


# -- construction and credentials --------------------------------------------------------------------------


def test_backend_from_settings_builds_each_backend_from_an_airflow_connection():
    assert isinstance(backend_from_settings("heuristic"), HeuristicJudge)
    extra = {"base_url": "http://llm-proxy:4000", "price_in_per_1k": 0.003, "price_out_per_1k": 0.015, "model": "claude-x"}
    anthropic_judge = backend_from_settings("anthropic", None, {"password": KEY, "extra": json.dumps(extra)})
    assert isinstance(anthropic_judge, AnthropicJudge)
    assert (anthropic_judge.model, anthropic_judge.base_url, anthropic_judge.pricing.output_per_1k) == ("claude-x", "http://llm-proxy:4000", 0.015)
    openai_judge = backend_from_settings("openai_compatible", "llama-3-70b", {"host": "vllm.internal", "port": 8000,
                                                                    "extra": {"price_in_per_1k": 0, "price_out_per_1k": 0, "json_mode": False}})
    assert isinstance(openai_judge, OpenAICompatibleJudge)
    assert (openai_judge.model, openai_judge.base_url, openai_judge.json_mode) == ("llama-3-70b", "https://vllm.internal:8000", False)


@pytest.mark.parametrize(("backend", "model", "connection", "message"), [
    ("gpt", "m", {}, "unknown judge backend 'gpt'"),
    ("anthropic", None, {"password": KEY, "extra": {"price_in_per_1k": 1, "price_out_per_1k": 1}}, "needs a model"),
    ("anthropic", "m", {"password": KEY, "extra": {"price_in_per_1k": 1}}, "set price_out_per_1k"),
    ("openai_compatible", "m", {"password": KEY, "extra": {"price_in_per_1k": 1, "price_out_per_1k": 1, "baseurl": "x"}}, "unknown extra key(s) ['baseurl']"),
    ("anthropic", "m", {"extra": {"price_in_per_1k": 1, "price_out_per_1k": 1}}, "needs an API key"),
    ("openai_compatible", "m", {"extra": "{not json"}, "extra is not valid JSON"),
])
def test_backend_from_settings_errors_are_actionable_and_never_show_the_key(backend, model, connection, message):
    with pytest.raises(ValueError) as info:
        backend_from_settings(backend, model, connection)
    assert message in str(info.value) and KEY not in str(info.value)


def test_keys_are_masked_and_never_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-anthropic-key")
    monkeypatch.setenv("OPENAI_API_KEY", "env-openai-key")
    judge = AnthropicJudge(KEY, "claude-x", base_url="http://127.0.0.1:9", price_in=1, price_out=1)
    assert KEY not in repr(judge) and "api_key='***'" in repr(judge) and KEY not in json.dumps(judge.describe())
    assert judge.client.api_key == KEY  # the explicit key, not the environment's
    local = OpenAICompatibleJudge(None, "llama", base_url="http://127.0.0.1:9/v1")
    assert local.client.api_key == OpenAICompatibleJudge.NO_KEY and "env-openai-key" not in repr(local)
    with pytest.raises(ValueError, match="needs an API key"):
        AnthropicJudge("", "claude-x")
    with pytest.raises(ValueError, match="needs an API key"):
        OpenAICompatibleJudge(None, "gpt-x")
    assert repr(Secret(KEY)) == str(Secret(KEY)) == "'***'" and Secret(KEY).reveal() == KEY and not Secret("")
