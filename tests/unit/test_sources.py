"""Bundle problems reported by path become FILE:LINE messages."""

from __future__ import annotations

import pytest
from claiim_core.sources import locate, problem_path, yaml_lines

BUNDLE = """\
org: demo
skills:
  - name: deploy
    actions: [deploy:staging]
policies:
  - name: careful
    skill: deploy-v9
    allow:
      - deploy:staging
      - "bad action"
agents:
  - id: bot
    anchor: j.smith
    skills: [deploy]
    policy: careful
"""


@pytest.mark.parametrize(("problem", "line"), [
    ("policies[0] (careful).allow[1]: 'bad action' is not an action pattern", 10),
    ("policies[0] (careful).skill: no skill deploy-v9 in org demo", 7),
    ("agents[0] (bot).skills[0]: no skill deploy in org demo", 14),
    ("Expected `str`, got `int` - at `$.agents[0].anchor`", 13),
    ("agents[0] (bot).policy.deeper: not in the file, so its parent", 15),
    ("org: something about the org", 1),
    ("a problem with no path", 1),
])
def test_problems_point_at_their_line(problem: str, line: int) -> None:
    assert locate(problem, yaml_lines(BUNDLE), "b.yaml") == f"b.yaml:{line}: {problem}"


def test_problem_paths() -> None:
    assert problem_path("skills[2] (x-y).actions[0]: bad") == "skills[2].actions[0]"
    assert problem_path("Object missing required field `org` - at `$`") == ""


def test_invalid_yaml_has_no_lines() -> None:
    assert yaml_lines("a: [b\n") == {}
