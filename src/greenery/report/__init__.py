"""The answers for the Director of Product: asked through the semantic layer (answers), drawn
(charts), and written as the README's generated section and an HTML report (render)."""
