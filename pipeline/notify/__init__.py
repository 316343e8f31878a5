"""`notify`: tell people when the pipeline fails, recovers or releases, and on demand.

`message.py` turns summary.json, release.json or a text into a `Notice`; each channel module
(`alertmanager`, `telegram`, `slack`, `webhook`) turns a notice into HTTP requests and reads
the replies, all pure; `send.py` sends them with retries under one deadline and reports
every channel, so a channel that fails never changes the pipeline's exit code. `argocd.py`
writes the Argo CD side: argocd-notifications templates and triggers for the same channels.
"""
