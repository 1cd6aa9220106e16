"""What a release is made of: the license the crates declare, the changelog's release sections, the version
the image is tagged with."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cargo_version() -> str:
    return re.search(r'^version = "([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)


def test_license_file_matches_the_declared_license():
    assert re.search(r'^license = "Apache-2.0"$', (REPO / "Cargo.toml").read_text(), re.M)
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_changelog_has_unreleased_then_dated_releases():
    sections = re.findall(r"^## (.+)$", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert sections[0] == "[Unreleased]", sections[:3]
    releases = sections[1:]
    assert releases, "at least one release section"
    versions = []
    for title in releases:
        m = re.fullmatch(r"\[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})", title)
        assert m, f"release sections are `## [x.y.z] - YYYY-MM-DD`, not {title!r}"
        versions.append(tuple(int(x) for x in m.group(1).split(".")))
    assert versions == sorted(versions, reverse=True), "newest release first"
    # Cargo.toml carries the last release's version until the next release is cut.
    assert ".".join(map(str, versions[0])) == cargo_version()
