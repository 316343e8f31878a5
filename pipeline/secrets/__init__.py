"""SealedSecrets: sealing values as kubeseal does, and checking what a repository commits.

`kubeseal_format` is the wire format, `certificates` reads the controller's certificate,
`sealing` writes and merges manifests (`gitops-pipeline seal`), `detect` finds plaintext
secrets with detect-secrets, `check` judges SealedSecrets, and `stage` is validate's
`secrets` stage, run in-process on the host or as a container step in Dagger (`steps`).
Modules that need `cryptography` or `detect-secrets` (the `secrets` extra) import them
themselves; `steps` and `stage` import neither, so the Dagger module loads without them.
"""
