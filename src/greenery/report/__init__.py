"""The answers for the Director of Product: asked through the semantic layer (answers), drawn
(charts), and written as docs/answers.md's generated section, the README's generated headline
and an HTML report (render)."""
