"""The kinds of secret detect-secrets 1.5.0 reports (`PotentialSecret.type`), as data.

Source: detect_secrets.core.plugins.util.get_mapping_from_secret_type_to_class() of the
pinned detect-secrets 1.5.0 (PyPI), less "Public IP (ipv4)", which this check does not run.
Kept here so pipeline.yaml's `secrets.allow[].type` is checked without importing the
library (the Dagger module's runtime does not carry it); tests hold it to the library.
"""

from __future__ import annotations

DETECTOR_TYPES = (
    "AWS Access Key",
    "Artifactory Credentials",
    "Azure Storage Account access key",
    "Base64 High Entropy String",
    "Basic Auth Credentials",
    "Cloudant Credentials",
    "Discord Bot Token",
    "GitHub Token",
    "GitLab Token",
    "Hex High Entropy String",
    "IBM COS HMAC Credentials",
    "IBM Cloud IAM Key",
    "JSON Web Token",
    "Mailchimp Access Key",
    "NPM tokens",
    "OpenAI Token",
    "Private Key",
    "PyPI Token",
    "Secret Keyword",
    "SendGrid API Key",
    "Slack Token",
    "SoftLayer Credentials",
    "Square OAuth Secret",
    "Stripe Access Key",
    "Telegram Bot Token",
    "Twilio API Key",
)
