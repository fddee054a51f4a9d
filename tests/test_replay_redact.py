"""Redaction of recorded conversations, reviewed case by case: nothing that points at a person
survives, what the triage needs does (ages, the words of the situation), and the fakes are
consistent within a conversation."""
from __future__ import annotations

import pytest

from bot.replay.record import script_from_case
from bot.replay.redact import Redactor
from bot.replay.script import load_script

CASES = [
    ("en", "hi my name is maria lopez, my boss Tony took my passport. call me at 514-555-0182 or "
           "maria.l@gmail.com. I work at Sunny Farms in Leamington, 1234 Talbot Rd. i owe 6,000 dollars. im 16",
     ["maria", "lopez", "Tony", "514", "0182", "maria.l@gmail.com", "Sunny Farms", "Leamington", "1234 Talbot",
      "6,000"],
     ["took my passport", "im 16", "i owe", "dollars"]),
    ("es", "me llamo Rosa, el señor Ramirez me quito el pasaporte, vivo en Montreal, mi numero +52 55 1234 5678, "
           "me debe 15000 pesos, tengo 17 años",
     ["Rosa", "Ramirez", "Montreal", "1234 5678", "15000"], ["me quito el pasaporte", "tengo 17 años"]),
    ("fr", "je mappelle Aminata, mon patron garde mon passeport, je suis à Laval depuis 3 mois",
     ["Aminata", "Laval"], ["garde mon passeport", "3 mois"]),
    ("tl", "ako si Joy, kinuha ng amo ang passport ko, nasa Calgary ako, tawag ka sa 09171234567",
     ["Joy", "Calgary", "09171234567"], ["kinuha ng amo ang passport ko"]),
    ("zh", "我叫王芳，老板拿了我的护照，我在多伦多，电话 6471234567",
     ["王芳", "多伦多", "6471234567"], ["老板拿了我的护照"]),
    ("ar", "اسمي فاطمة، الكفيل اخذ جوازي، رقمي ٠٥٥١٢٣٤٥٦٧ انا في تورونتو",
     ["فاطمة", "٠٥٥١٢٣٤٥٦٧", "تورونتو"], ["الكفيل اخذ جوازي"]),
    ("uk", "мене звати Оксана, пан Петренко забрав паспорт, я в Торонто",
     ["Оксана", "Петренко", "Торонто"], ["забрав паспорт"]),
    ("th", "หนูชื่อมะลิ นายจ้างยึดพาสปอร์ต อยู่โทรอนโต", ["มะลิ", "โทรอนโต"], ["นายจ้างยึดพาสปอร์ต"]),
    ("ko", "제 이름은 김민지 입니다. 토론토에 있어요. 사장님이 여권을 가져갔어요", ["김민지", "토론토"], ["여권을 가져갔어요"]),
    ("hi", "मेरा नाम सीता है, मालिक ने पासपोर्ट ले लिया, मैं ब्रैम्पटन में हूँ", ["सीता", "ब्रैम्पटन"], ["पासपोर्ट ले लिया"]),
    ("vi", "tên tôi là Lan, chủ giữ hộ chiếu, số 4165550199", ["Lan", "4165550199"], ["giữ hộ chiếu"]),
    ("pa", "ਮੇਰਾ ਨਾਮ ਜਸਪ੍ਰੀਤ ਹੈ, ਮਾਲਕ ਨੇ ਪਾਸਪੋਰਟ ਰੱਖ ਲਿਆ, ਬਰੈਂਪਟਨ ਵਿੱਚ", ["ਜਸਪ੍ਰੀਤ", "ਬਰੈਂਪਟਨ"], ["ਪਾਸਪੋਰਟ ਰੱਖ ਲਿਆ"]),
]


@pytest.mark.parametrize("language, text, gone, kept", CASES, ids=[c[0] for c in CASES])
def test_identifying_words_are_replaced_and_the_situation_kept(language, text, gone, kept):
    redacted = Redactor(language, seed=7).redact(text)
    for original in gone:
        assert original not in redacted, (original, redacted)
    for words in kept:
        assert words in redacted, (words, redacted)


def test_the_same_name_gets_the_same_fake_throughout_a_conversation():
    redactor = Redactor("en", seed=3)
    first = redactor.redact("my name is Maria and my boss is Mr Tony")
    second = redactor.redact("Tony said Maria must pay")
    fake_tony = first.split("Mr ")[1]
    assert fake_tony in second and "Tony" not in second and "Maria" not in second


def test_ordinary_words_that_are_also_names_stay_at_the_start_of_a_sentence():
    text = "Will you help me? the boss is angry, i left it at home"
    assert Redactor("en", seed=1).redact(text) == text


def test_a_recorded_case_becomes_a_loadable_script_with_its_triage_expected(tmp_path):
    case = {"id": "3f0c9a2e-0000", "language": "es", "channel": "whatsapp", "risk": "high", "imminent": False,
            "minor": True, "third_party": False,
            "indicators": [{"id": "SEX", "evidence": []}, {"id": "MINOR", "evidence": []}],
            "transcript": [{"from": "texter", "text": "me llamo Ana, tengo 16, mi numero 5145550182"},
                           {"from": "bot", "text": "Gracias por escribir."},
                           {"from": "agent", "text": "Hola Ana, soy Julie."},
                           {"from": "texter", "text": "si"}]}
    script = script_from_case(case, seed=5)
    assert [t["texter"] for t in script["turns"]][1] == "si" and len(script["turns"]) == 2
    assert "Ana" not in script["turns"][0]["texter"] and "5145550182" not in script["turns"][0]["texter"]
    assert "tengo 16" in script["turns"][0]["texter"]
    assert script["expect_end"] == {"handoff": True, "risk_at_least": "high", "indicators": ["MINOR", "SEX"]}
    assert "minor" in script["tags"] and script["channel"] == "whatsapp"
    import yaml

    path = tmp_path / "es" / "recorded.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(script, allow_unicode=True), encoding="utf-8")
    assert load_script(path).expect_end["risk_at_least"] == "high"
