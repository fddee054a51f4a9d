"""The project's Rasa NLU components, listed in ``config.yml`` and run by the live bot and by
``hotline triage`` alike."""
from __future__ import annotations

from typing import Any

import spacy
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.tokenizers.tokenizer import Token
from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.conversation.answers import answers, parse_age
from bot.conversation.answers import normalise as normalise_answer
from bot.conversation.facts import cover_word
from bot.nlu.language_id import LanguageIdentifier
from bot.nlu.scripts import needs_segmentation
from bot.triage.indicators import IndicatorExtractor as Extractor
from bot.triage.risk import risk_level

#: Key of the language detection in a message and in Rasa's parse data (``latest_message``).
LANGUAGE_DETECTION = "language_detection"
#: Key of the indicator findings in a message and in Rasa's parse data.
TRIAGE = "triage"
#: The intent of each kind of short answer (``bot.conversation.answers``).
ANSWER_INTENTS = {"yes": "affirm", "no": "deny", "skip": "skip", "delete": "delete_data"}
#: Intents that never fill a form's answer (domain.yml's ``not_intent``): an age misread as
#: danger gets the classifiers' best intent outside these instead.
NOT_ANSWERS = {"emergency", "stop", "cover", "delete_data", "ask_human", "ask_rights", "share_media",
               "choose_language"}
#: A message this short that holds an age and no indicator is an answer ("41岁", "elle a 26 ans").
AGE_ANSWER_LENGTH = 20


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class LanguageDetector(GraphComponent):
    """Adds ``language_detection`` (see ``Detection.as_dict``) to every message.

    It emits no entity: what a conversation's language becomes depends on the conversation so far,
    which the slot validation action decides with ``bot.nlu.language_id.choose_language``.
    """

    def __init__(self, identifier: LanguageIdentifier) -> None:
        self.identifier = identifier

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "LanguageDetector":
        identifier = LanguageIdentifier()
        identifier.warm_up()
        return cls(identifier)

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            detection = self.identifier.identify(message.get("text") or "")
            message.set(LANGUAGE_DETECTION, detection.as_dict(), add_to_output=True)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER], is_trainable=False)
class MultilingualTokenizer(WhitespaceTokenizer):
    """Whitespace tokenization, but spaCy's segmenters for Chinese and Thai, which use no spaces.

    Emoji are kept as tokens: "👍" is an answer on a phone.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._segmenters: dict[str, Any] = {}

    @staticmethod
    def not_supported_languages() -> list[str] | None:
        return None

    def remove_emoji(self, text: str) -> str:
        return text

    def _segmenter(self, language: str):
        if language not in self._segmenters:
            self._segmenters[language] = spacy.blank(language)
        return self._segmenters[language]

    def tokenize(self, message: Message, attribute: str) -> list[Token]:
        text = message.get(attribute)
        language = needs_segmentation(text or "")
        if attribute != "text" or language is None:
            return super().tokenize(message, attribute)
        doc = self._segmenter(language)(text)
        tokens = [Token(t.text, t.idx) for t in doc if not t.is_space and not t.is_punct]
        return self._apply_token_pattern(tokens) or [Token(text, 0)]


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class IndicatorExtractor(GraphComponent):
    """Adds ``triage`` to every message: indicators with evidence spans, imminent danger, minor,
    third party, and the message's own risk level. Runs after ``LanguageDetector``.

    Which lexicons run is ``Extractor.languages_for``'s choice: the detected language's and English,
    and more when the language is unsupported or uncertain.
    """

    def __init__(self, extractor: Extractor) -> None:
        self.extractor = extractor

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "IndicatorExtractor":
        return cls(Extractor())

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get("text") or ""
            detection = message.get(LANGUAGE_DETECTION) or {}
            languages = self.extractor.languages_for(
                text, detection.get("language", "en"), detection.get("confidence", 1.0), detection.get("supported", True),
                detection.get("scores"),
            )
            finding = self.extractor.extract(text, languages)
            message.set(TRIAGE, {
                "indicators": finding.indicators,
                "evidence": [e.as_dict(text) for e in finding.evidence],
                "imminent": finding.imminent,
                "danger": [{"start": e.start, "end": e.end, "text": text[e.start:e.end]} for e in finding.danger],
                "third_party": finding.third_party,
                "minor": finding.minor,
                "age": finding.age,
                "worry": finding.worry,
                "if_minor": [e.as_dict(text) for e in finding.if_minor],
                "risk": risk_level(finding.indicators, finding.imminent, worry=finding.worry),
            }, add_to_output=True)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class SafetyOverrides(GraphComponent):
    """The last word on the intent of messages that must never be misread. Runs after the
    classifiers (config.yml lists it last).

    - imminent danger found by ``IndicatorExtractor`` is ``emergency``, whatever DIET thought
      ("stop hitting me" is not a STOP);
    - the cover word (``bot.conversation.facts.cover_word``) is ``cover``;
    - a whole-message short answer from data/conversation/answers.yml is ``affirm``, ``deny``,
      ``skip`` or ``delete_data``: "n", "2", "👍" or "oo po" are too short for DIET to be sure of;
    - a bare age ("41岁", "elle a 26 ans") with no indicator is the answer to "how old are you", never
      ``emergency``: DIET once sent such answers to 911. Danger in the same words ("16 and he hits
      me") has an indicator and stays as DIET or the extractor read it.
    """

    def __init__(self, cover: str) -> None:
        self.cover = normalise_answer(cover)

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "SafetyOverrides":
        return cls(cover_word())

    def intent_of(self, message: Message) -> str | None:
        text = message.get("text") or ""
        triage = message.get(TRIAGE) or {}
        if triage.get("imminent"):
            return "emergency"
        if normalise_answer(text) == self.cover:
            return "cover"
        language = (message.get(LANGUAGE_DETECTION) or {}).get("language")
        answer = ANSWER_INTENTS.get(answers().classify(text, language) or "")
        if answer:
            return answer
        if (message.get(INTENT) or {}).get("name") == "emergency" and self._bare_age(text, triage):
            ranking = message.get(INTENT_RANKING_KEY) or []
            return next((r["name"] for r in ranking if r.get("name") not in NOT_ANSWERS), "describe_situation")
        return None

    @staticmethod
    def _bare_age(text: str, triage: dict[str, Any]) -> bool:
        others = set(triage.get("indicators") or []) - {"MINOR"}
        return len(text.strip()) <= AGE_ANSWER_LENGTH and not others and parse_age(text) is not None

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            intent = self.intent_of(message)
            if intent is None or (message.get(INTENT) or {}).get("name") == intent:
                continue
            ranking = [{"name": intent, "confidence": 1.0}] + [
                r for r in message.get(INTENT_RANKING_KEY) or [] if r.get("name") != intent]
            message.set(INTENT, {"name": intent, "confidence": 1.0}, add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data
