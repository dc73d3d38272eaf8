"""The ``password`` strategy: a new random value from ``GetRandomPassword``, nothing to set
or test elsewhere (whatever reads the secret picks the new value up). A JSON secret keeps its
other fields; its ``password`` field (or the one the ``pitcrew:key`` tag names) changes.
Policy: ``rotation.password`` in the configuration, overridden by the secret's tags
``pitcrew:length``, ``pitcrew:exclude-characters``, ``pitcrew:exclude-punctuation``, ...
"""

from __future__ import annotations

from pitcrew.rotation.strategy import RotationContext, new_password, with_new_value


class PasswordStrategy:
    name = "password"

    def create(self, context: RotationContext) -> str:
        return with_new_value(context, new_password(context), default_key="password")

    def set(self, context: RotationContext) -> None:
        context.require_pending()

    def test(self, context: RotationContext) -> None:
        context.require_pending()
