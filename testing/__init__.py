"""Test and benchmark doubles: small fake OpenAI servers, and how a child process is ended
(never imported by the app)."""
