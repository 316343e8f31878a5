"""Argo CD Image Updater settings in both forms: the ImageUpdater resource and annotations.

Facts used (Image Updater v1.x docs and `api/v1alpha1/imageupdater_types.go`, legacy
annotations from `pkg/argocd/annotations.go`): `allowTags` / `<alias>.allow-tags` is
`regexp:<re>` or `any`; `imageName` / `image-list` is `name[:constraint]`; the helm
targets name the dotted values paths of the image name and tag; `helmvalues:/path` writes
to a file relative to the repository root. Tags are matched with Go's RE2; the patterns we
write use only syntax RE2 and Python's `re` read alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

ANNOTATION = "argocd-image-updater.argoproj.io/"
ALIAS = "app"  # one image per Application; annotation keys cannot be templated per element
API_VERSION = "argocd-image-updater.argoproj.io/v1alpha1"
STABLE_TAG = r"[0-9]+\.[0-9]+\.[0-9]+"  # X.Y.Z, as `release` tags an image (no `v`)
HELMVALUES = "helmvalues:"


def allow_tags(prereleases: str) -> str:
    """The allow-tags filter: X.Y.Z only, or also X.Y.Z-<prereleases>."""
    if not prereleases:
        return f"regexp:^{STABLE_TAG}$"
    return f"regexp:^{STABLE_TAG}(-(?:{prereleases}))?$"


def default_constraint(prereleases: str) -> str:
    # Masterminds/semver leaves prereleases out of a range unless its bound has one.
    return ">=0.0.0-0" if prereleases else ">=0.0.0"


def tags_admitted(allow: str, tags: list[str]) -> tuple[list[str] | None, str | None]:
    """The tags the filter admits, or (None, why) when the filter cannot be read."""
    if allow == "any":
        return list(tags), None
    if not allow.startswith("regexp:"):
        return None, f"expected `regexp:<pattern>` or `any`, got {allow!r}"
    try:
        pattern = re.compile(allow.removeprefix("regexp:"))
    except re.error as exc:
        # Image Updater matches nothing with an invalid pattern: no update would ever happen.
        return None, f"not a valid regular expression ({exc})"
    return [tag for tag in tags if pattern.search(tag)], None


def split_image(image: str) -> tuple[str, str]:
    """`name[:constraint]` -> (name, constraint); a registry port is part of the name."""
    name, colon, rest = image.rpartition(":")
    if not colon or "/" in rest:
        return image, ""
    return name, rest


@dataclass(frozen=True)
class UpdaterSettings:
    """What one form of the configuration says for one Application, with where it says it."""

    form: str  # "annotations" or "ImageUpdater"
    file: str
    where: str  # the field path in `file`, for findings
    image: str  # name[:constraint]
    allow_tags: str | None
    tag_path: str | None
    name_path: str | None
    write_back_target: str | None
    fields: Mapping[str, str]  # setting -> its field path, for naming the one that is wrong

    def field(self, setting: str) -> str:
        return self.fields.get(setting, self.where)


def from_annotations(
    annotations: Mapping[str, object], file: str, where: str
) -> UpdaterSettings | None:
    """The legacy annotation form on one Application; None when it has no `image-list`."""
    image_list = annotations.get(f"{ANNOTATION}image-list")
    if not isinstance(image_list, str):
        return None
    first = image_list.split(",")[0].strip()
    alias, equals, image = first.partition("=")
    if not equals:
        alias, image = "", first
    key = alias.replace("/", "_")

    def text(name: str) -> str | None:
        value = annotations.get(f"{ANNOTATION}{name}")
        return value if isinstance(value, str) else None

    def at(name: str) -> str:
        field = f"metadata.annotations[{ANNOTATION}{name}]"
        return f"{where}.{field}" if where else field

    return UpdaterSettings(
        form="annotations",
        file=file,
        where=at("image-list"),
        image=image.strip(),
        allow_tags=text(f"{key}.allow-tags"),
        # Image Updater's defaults when a path is not given.
        tag_path=text(f"{key}.helm.image-tag") or "image.tag",
        name_path=text(f"{key}.helm.image-name") or "image.name",
        write_back_target=text("write-back-target"),
        fields={
            "image": at("image-list"),
            "allow_tags": at(f"{key}.allow-tags"),
            "tag_path": at(f"{key}.helm.image-tag"),
            "name_path": at(f"{key}.helm.image-name"),
            "write_back_target": at("write-back-target"),
        },
    )


@dataclass(frozen=True)
class ResourceRef:
    """One `applicationRefs[]` entry of an ImageUpdater resource, flattened per image."""

    name_pattern: str
    settings: UpdaterSettings


def from_resource(document: Mapping[str, object], file: str) -> list[ResourceRef]:
    """Each (applicationRef, image) of an ImageUpdater resource, spec defaults applied."""
    spec = document.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    spec_settings = _mapping(spec.get("commonUpdateSettings"))
    spec_write_back = _mapping(spec.get("writeBackConfig"))
    found: list[ResourceRef] = []
    for ref_index, ref in enumerate(_list(spec.get("applicationRefs"))):
        ref_map = _mapping(ref)
        ref_at = f"spec.applicationRefs[{ref_index}]"
        ref_write_back = _mapping(ref_map.get("writeBackConfig"))
        write_back = ref_write_back or spec_write_back
        write_back_at = (
            f"{ref_at}.writeBackConfig" if ref_write_back else "spec.writeBackConfig"
        ) + ".gitConfig.writeBackTarget"
        target = _mapping(write_back.get("gitConfig")).get("writeBackTarget")
        ref_settings = _mapping(ref_map.get("commonUpdateSettings"))
        for image_index, image in enumerate(_list(ref_map.get("images"))):
            image_map = _mapping(image)
            image_at = f"{ref_at}.images[{image_index}]"
            image_settings = _mapping(image_map.get("commonUpdateSettings"))
            allow, allow_at = _first_set(
                "allowTags",
                (image_settings, f"{image_at}.commonUpdateSettings.allowTags"),
                (ref_settings, f"{ref_at}.commonUpdateSettings.allowTags"),
                (spec_settings, "spec.commonUpdateSettings.allowTags"),
            )
            helm = _mapping(_mapping(image_map.get("manifestTargets")).get("helm"))
            settings = UpdaterSettings(
                form="ImageUpdater",
                file=file,
                where=image_at,
                image=str(image_map.get("imageName", "")),
                allow_tags=allow,
                tag_path=str(helm.get("tag") or "image.tag"),
                name_path=str(helm.get("name") or "image.name"),
                write_back_target=target if isinstance(target, str) else None,
                fields={
                    "image": f"{image_at}.imageName",
                    "allow_tags": allow_at,
                    "tag_path": f"{image_at}.manifestTargets.helm.tag",
                    "name_path": f"{image_at}.manifestTargets.helm.name",
                    "write_back_target": write_back_at,
                },
            )
            found.append(ResourceRef(str(ref_map.get("namePattern", "")), settings))
    return found


def _first_set(key: str, *levels: tuple[Mapping[str, object], str]) -> tuple[str | None, str]:
    """The most specific level's value: image beats applicationRef beats spec."""
    for settings, where in levels:
        value = settings.get(key)
        if isinstance(value, str):
            return value, where
    return None, levels[0][1]


def _mapping(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []
