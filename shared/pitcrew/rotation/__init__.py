"""Secret rotation: Secrets Manager's four-step protocol with its strategies (``password``,
``postgres``, ``github-webhook``, ``http``), and Vault KV v2 rotation with check-and-set.

- ``pitcrew.rotation.protocol.SecretRotation``: one step of a Secrets Manager rotation
  (the ``rotate_secret`` function).
- ``pitcrew.rotation.versions.current_and_pending``: the values a credential check accepts
  while a rotation is under way.
- ``pitcrew.rotation.vault.VaultRotation``: the ``rotate_vault`` schedule's work.
"""
