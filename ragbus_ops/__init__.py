"""Operator tooling: the command line, the HTTP client, evaluation, dead-letter tools, the local
supervisor and language-model server, AsyncAPI generation. Nothing below it imports it."""
