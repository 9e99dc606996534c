"""The local development stack without Docker: one Apache Kafka KRaft node and one PostgreSQL
cluster, both private to the checkout (gitignored folders), for runs, tests and CI."""
