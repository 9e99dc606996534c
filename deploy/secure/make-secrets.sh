#!/bin/sh
# Makes ./secrets/ for docker-compose.secure.yml: a CA, the broker's certificate for host "kafka"
# (key and chain in one PEM file, Kafka's PEM keystore), and a random password per principal and
# for PostgreSQL. For trying the secured stack; in production the CA and passwords are yours.
#   deploy/secure/make-secrets.sh [DIR]      (default ./secrets; refuses to overwrite)
set -eu
dir=${1:-secrets}
if [ -e "$dir" ]; then
    echo "make-secrets: $dir exists; remove it first to make new secrets" >&2
    exit 2
fi
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=TradePulse example CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kafka" -keyout kafka.key -out kafka.csr 2>/dev/null
printf 'subjectAltName=DNS:kafka\nextendedKeyUsage=serverAuth\n' > kafka.ext
openssl x509 -req -in kafka.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile kafka.ext -out kafka.crt 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in kafka.key -out kafka-key.pem
cat kafka-key.pem kafka.crt ca.pem > kafka-keystore.pem
rm -f kafka.csr kafka.ext kafka.key kafka-key.pem ca.srl
# >>> generated: principals
principals='customs taxrefund cips cbec cycle release history gateway producer'
# <<< generated: principals
for who in $principals; do
    openssl rand -hex 24 > "kafka_${who}_password"
done
openssl rand -hex 24 > postgres_password
printf 'postgresql://tradepulse:%s@postgres:5432/tradepulse\n' "$(cat postgres_password)" > database_url
chmod 644 ./*  # bind-mounted secrets keep these modes: the containers run as other users
chmod 600 ca.key
echo "secrets written to $dir (keep ca.key offline; the services need only ca.pem)"
