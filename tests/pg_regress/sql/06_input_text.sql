-- The text sent for a paper, exactly as the DocTrove service builds it.
SELECT doctrove_embed.input_text('A title', 'An abstract.');
SELECT doctrove_embed.input_text('A title', NULL);
SELECT doctrove_embed.input_text('A title', E' \n\t');
SELECT doctrove_embed.input_text('  Spaced  ', ' kept inside ');
SELECT doctrove_embed.input_text(NULL, 'no title') IS NULL AS not_sent;
SELECT doctrove_embed.input_text('', 'empty title') IS NULL AS not_sent;
