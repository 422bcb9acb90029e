"""course.handout: the starter made from the solution's nbgrader fences."""

import pytest

from course import handout

SOURCE = '''\
def augment(images):
    # TODO 1: the augmentation map. Flip it.
    ### BEGIN SOLUTION
    flipped = images[::-1]
    return flipped
    ### END SOLUTION


x = 1
'''


def test_strip_solutions_follows_nbgrader_and_names_the_todo():
    starter = handout.strip_solutions(SOURCE)
    assert "### BEGIN SOLUTION" not in starter and "flipped" not in starter
    assert '    # TODO 1: the augmentation map. Flip it.\n    # YOUR CODE HERE\n' \
           '    raise NotImplementedError("TODO 1: the augmentation map")\n' in starter
    assert starter.endswith("x = 1\n")
    assert handout.solution_lines(SOURCE) == ["    flipped = images[::-1]", "    return flipped"]
    namespace = {}
    exec(starter, namespace)  # the starter is valid Python, and the stub names its TODO
    with pytest.raises(NotImplementedError, match="TODO 1: the augmentation map"):
        namespace["augment"]([1, 2])


@pytest.mark.parametrize("broken, message", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without a"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside the block"),
])
def test_unbalanced_fences_are_refused_with_the_line(broken, message):
    with pytest.raises(ValueError, match=message):
        handout.strip_solutions(broken)
