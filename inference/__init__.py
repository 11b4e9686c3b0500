"""inference: audio clip -> predicted, refined, exported `.vital` preset (issues 5-7)."""
