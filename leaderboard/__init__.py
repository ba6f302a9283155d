"""Board queries and the leaderboard index backends."""
