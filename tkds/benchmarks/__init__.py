"""The benchmark harness: embed, score the downstream tasks, write the leaderboard."""
