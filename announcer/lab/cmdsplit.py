"""Splitting a `cmd` or `exec` command line into words, as containerlab does with
github.com/google/shlex before running the words without a shell.

Must not: run anything, or expand variables, globs or `~` (containerlab does not).
"""

from __future__ import annotations


def split_command(text: str) -> tuple[str, ...]:
    """Split like containerlab (github.com/google/shlex), which runs the words without a
    shell: quotes and backslashes as in a shell, a word starting with '#' comments out the rest
    of the line, nothing is expanded. ValueError on an open quote or a trailing backslash."""
    words: list[str] = []
    word: list[str] = []
    state = "start"
    for char in text:
        if state == "comment":
            state = "start" if char == "\n" else state
        elif state in ("escape", "dquote-escape"):
            word.append(char)
            state = "word" if state == "escape" else "dquote"
        elif state == "squote":
            state = "word" if char == "'" else state
            word.extend(() if char == "'" else char)
        elif state == "dquote":
            state = {'"': "word", "\\": "dquote-escape"}.get(char, state)
            word.extend(() if char in '"\\' else char)
        elif char in " \t\r\n":
            if state == "word":
                words.append("".join(word))
                word, state = [], "start"
        elif char == "#" and state == "start":
            state = "comment"
        else:
            state = {"\\": "escape", '"': "dquote", "'": "squote"}.get(char, "word")
            word.extend(char if state == "word" else ())
    if state in ("escape", "dquote-escape"):
        raise ValueError("nothing after the final backslash")
    if state in ("squote", "dquote"):
        raise ValueError("no closing quote")
    return (*words, "".join(word)) if state == "word" else tuple(words)
