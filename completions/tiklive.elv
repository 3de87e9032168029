
use builtin;
use str;

set edit:completion:arg-completer[tiklive] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'tiklive'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'tiklive'= {
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand watch 'Connect to a live and print every event to stdout as NDJSON, one object per line'
            cand replay 'Print the events of a recording made with `watch --record`, exactly as watch printed them'
            cand sale 'Create, list, update and cancel sales made from chat claims'
            cand serve 'Follow lives, store everything, and serve an HTTP API, a WebSocket feed and the dashboard'
            cand gen-cert 'Make a self-signed certificate (cert.pem, key.pem) for local HTTPS with `serve`'
            cand export 'Write stored history as CSV (RFC 4180, UTF-8, header first)'
            cand login 'Log in with a TikTok account (Login Kit, desktop flow); list (--status) or refresh the accounts'
            cand logout 'Revoke an account''s authorisation at TikTok and delete its tokens from the database'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tiklive;watch'= {
            cand --record 'Append every raw push frame received to FILE (4-byte big-endian length, then the frame)'
            cand --filter 'Print only these event types (comma-separated), e.g. `chat,gift`'
            cand --claim-pattern 'Regular expression that replaces the claim keyword (default: JP, j''prends, je prends…)'
            cand --dedupe-window 'How many recent message ids are remembered to drop duplicates'
            cand --db 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)'
            cand --commit-interval 'Commit stored events at least this often'
            cand --commit-events 'Commit at most this many events in one transaction'
            cand --price-list 'CSV of item code to unit price (`item,price[,currency]`, header optional), for --auto-sale'
            cand --currency 'ISO 4217 currency of prices given without one'
            cand --room-id 'Use this room id and skip the username lookup'
            cand --web-url 'Base URL of TikTok''s web site (live page and api-live)'
            cand --webcast-url 'Base URL of TikTok''s webcast API (room info)'
            cand --sign-url 'Base URL of the signing service'
            cand --sign-api-key 'API key for the signing service (sent as the x-api-key header)'
            cand --session-id 'TikTok session id for a logged-in connection (shared with TikTok and the signing service)'
            cand --tt-target-idc 'Data centre of the logged-in account (the tt-target-idc cookie), e.g. eu-ttp2'
            cand --proxy 'HTTP proxy for every request, the WebSocket included, e.g. http://user:pass@host:3128'
            cand --user-agent 'The User-Agent used towards TikTok; the signature is bound to it'
            cand --max-retries 'Reconnect attempts after a drop before giving up'
            cand --retry-delay 'Base delay between reconnects; attempt n waits n times this, plus jitter'
            cand --dead-after 'Reconnect when no frame arrives for this long'
            cand --heartbeat-interval 'Interval between heartbeats sent to TikTok'
            cand --http-timeout 'Timeout of each HTTP request and of the WebSocket handshake'
            cand --claims-only 'Print only chat lines that are claims ("JP 12", "j''prends A3 M x2"…)'
            cand --gift-streaks 'Also print each in-progress update of a gift streak (flagged "streaking": true)'
            cand --include-raw 'Add the decoded protobuf message as JSON under "raw"'
            cand --no-store 'Do not store anything; only print'
            cand --auto-sale 'Create a pending sale for every claim as it arrives (item, variant and quantity from the claim)'
            cand --no-compress 'Ask TikTok for uncompressed payloads instead of gzip'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;replay'= {
            cand --threads 'Decoding threads (default: one per core)'
            cand --host 'The host the recording was made from, as stored in `lives.host` (default: the file name)'
            cand --filter 'Print only these event types (comma-separated), e.g. `chat,gift`'
            cand --claim-pattern 'Regular expression that replaces the claim keyword (default: JP, j''prends, je prends…)'
            cand --dedupe-window 'How many recent message ids are remembered to drop duplicates'
            cand --db 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)'
            cand --commit-interval 'Commit stored events at least this often'
            cand --commit-events 'Commit at most this many events in one transaction'
            cand --claims-only 'Print only chat lines that are claims ("JP 12", "j''prends A3 M x2"…)'
            cand --gift-streaks 'Also print each in-progress update of a gift streak (flagged "streaking": true)'
            cand --include-raw 'Add the decoded protobuf message as JSON under "raw"'
            cand --no-store 'Do not store anything; only print'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;sale'= {
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'Create a sale from a chat message (usually a claim), or a manual sale for a buyer'
            cand list 'List sales, oldest first'
            cand update 'Change a sale''s status, price, quantity or note'
            cand cancel 'Cancel a sale (nothing is deleted; its message can then be sold again)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tiklive;sale;create'= {
            cand --message 'The chat message the sale comes from (its msg_id, as printed by watch)'
            cand --buyer 'A manual sale for this buyer: `@handle` or TikTok''s numeric user id (needs --item)'
            cand --live 'The live of a manual sale (default: the buyer''s latest live)'
            cand --item 'Item code (default: the claim''s)'
            cand --variant 'Variant, e.g. a size (default: the claim''s)'
            cand --qty 'Quantity (default: the claim''s, else 1)'
            cand --price 'Unit price, e.g. 12.50 or 12,50; `12.50 USD` names the currency'
            cand --currency 'ISO 4217 currency of the price, when it names none'
            cand --note 'A free note'
            cand --db 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)'
            cand --force 'Create the sale even if the message already has one that is not cancelled'
            cand --json 'Print JSON (one object; NDJSON for lists) even on a terminal'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;sale;list'= {
            cand --live 'Only the sales of this live (its id in the database)'
            cand --buyer 'Only this buyer''s sales: `@handle` or numeric user id'
            cand --status 'Only sales with this status'
            cand --since 'Only sales created at or after this time (RFC 3339, a date, a Unix time, or 24h / 7d back)'
            cand --db 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)'
            cand --json 'Print JSON (one object; NDJSON for lists) even on a terminal'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;sale;update'= {
            cand --status 'New status (`cancelled` is the same as `sale cancel`)'
            cand --item 'Item code (an empty text removes it)'
            cand --variant 'Variant, e.g. a size (an empty text removes it)'
            cand --price 'Unit price, e.g. 12.50 or 12,50; `12.50 USD` names the currency'
            cand --currency 'ISO 4217 currency of the price, when it names none'
            cand --qty 'Quantity'
            cand --note 'Replace the note (an empty text removes it)'
            cand --db 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)'
            cand --json 'Print JSON (one object; NDJSON for lists) even on a terminal'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;sale;cancel'= {
            cand --db 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)'
            cand --json 'Print JSON (one object; NDJSON for lists) even on a terminal'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;sale;help'= {
            cand create 'Create a sale from a chat message (usually a claim), or a manual sale for a buyer'
            cand list 'List sales, oldest first'
            cand update 'Change a sale''s status, price, quantity or note'
            cand cancel 'Cancel a sale (nothing is deleted; its message can then be sold again)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tiklive;sale;help;create'= {
        }
        &'tiklive;sale;help;list'= {
        }
        &'tiklive;sale;help;update'= {
        }
        &'tiklive;sale;help;cancel'= {
        }
        &'tiklive;sale;help;help'= {
        }
        &'tiklive;serve'= {
            cand --user 'A host to follow from the start (repeatable, or comma-separated in TIKTOK_USERNAME)'
            cand --bind 'The address to listen on. Anything but loopback needs TIKLIVE_API_TOKEN'
            cand --port 'The port of the API, the dashboard and the WebSocket at /ws'
            cand --ws-port 'A second port serving only the WebSocket feed, at any path (0: none)'
            cand --api-token 'The bearer token of the API and the WebSocket (required off loopback)'
            cand --cors-origin 'Allow browser requests from this origin, e.g. https://shop.example (repeatable; CORS is off without it)'
            cand --tls-cert 'Serve HTTPS and WSS with this certificate (PEM, e.g. from `tiklive gen-cert`)'
            cand --tls-key 'The private key of --tls-cert (PEM)'
            cand --log-file 'Also write logs to FILE, rotated daily (FILE.YYYY-MM-DD)'
            cand --claim-pattern 'Regular expression that replaces the claim keyword (default: JP, j''prends, je prends…)'
            cand --offline-poll 'While a followed host is not live, check again this often, and follow each new live of theirs (0: stop at the first "not live")'
            cand --commit-interval 'Commit stored events at least this often'
            cand --commit-events 'Commit at most this many events in one transaction'
            cand --redirect-uri 'The redirect URI of the dashboard''s "Connect TikTok" flow, exactly as registered for the app: this server''s /callback/ or /webhook/ URL (default: http(s)://localhost:PORT/callback/)'
            cand --scopes 'Scopes the dashboard''s "Connect TikTok" asks for, comma-separated'
            cand --client-key 'The app''s Client key (the Client secret comes from TIKTOK_CLIENT_SECRET only)'
            cand --auth-url 'Base URL of TikTok''s authorize page (`/v2/auth/authorize/` is appended)'
            cand --open-api-url 'Base URL of TikTok''s Open API (`/v2/oauth/token/`, `/v2/user/info/`… are appended)'
            cand --db 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)'
            cand --price-list 'CSV of item code to unit price (`item,price[,currency]`, header optional), for --auto-sale'
            cand --currency 'ISO 4217 currency of prices given without one'
            cand --room-id 'Use this room id and skip the username lookup'
            cand --web-url 'Base URL of TikTok''s web site (live page and api-live)'
            cand --webcast-url 'Base URL of TikTok''s webcast API (room info)'
            cand --sign-url 'Base URL of the signing service'
            cand --sign-api-key 'API key for the signing service (sent as the x-api-key header)'
            cand --session-id 'TikTok session id for a logged-in connection (shared with TikTok and the signing service)'
            cand --tt-target-idc 'Data centre of the logged-in account (the tt-target-idc cookie), e.g. eu-ttp2'
            cand --proxy 'HTTP proxy for every request, the WebSocket included, e.g. http://user:pass@host:3128'
            cand --user-agent 'The User-Agent used towards TikTok; the signature is bound to it'
            cand --max-retries 'Reconnect attempts after a drop before giving up'
            cand --retry-delay 'Base delay between reconnects; attempt n waits n times this, plus jitter'
            cand --dead-after 'Reconnect when no frame arrives for this long'
            cand --heartbeat-interval 'Interval between heartbeats sent to TikTok'
            cand --http-timeout 'Timeout of each HTTP request and of the WebSocket handshake'
            cand --auto-sale 'Create a pending sale for every claim as it arrives (item, variant and quantity from the claim)'
            cand --no-compress 'Ask TikTok for uncompressed payloads instead of gzip'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;gen-cert'= {
            cand --out-dir 'Directory for cert.pem and key.pem (created, private, if missing)'
            cand --host 'Another name or IP address the certificate is valid for, e.g. a LAN name or address so that a phone can reach the dashboard (repeatable; localhost, 127.0.0.1 and ::1 are always included)'
            cand --days 'Days of validity'
            cand --force 'Replace existing cert.pem and key.pem'
            cand --json 'Print one JSON object instead of lines of text'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;export'= {
            cand --since 'Only rows at or after this time (RFC 3339, a date, a Unix time, or 24h / 7d / 90m back)'
            cand --until 'Only rows before this time'
            cand --live 'Only this live (its id in the database, as in `sale list`)'
            cand --room 'Only this TikTok room'
            cand --user 'Only this user''s rows: `@handle` or numeric user id'
            cand -o 'Write to FILE (atomically: a temporary file renamed into place) instead of stdout'
            cand --out 'Write to FILE (atomically: a temporary file renamed into place) instead of stdout'
            cand --delimiter 'Field delimiter: one ASCII character, e.g. '';'' for French spreadsheets, or `tab` [default: '','', or '';'' with --excel-fr]'
            cand --incremental 'Export only rows added since the last export with this NAME (a cursor kept in the database)'
            cand --db 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)'
            cand --bom 'Start with a UTF-8 byte order mark, for Excel'
            cand --excel-fr 'For French Excel: a BOM, '';'' as delimiter and decimal commas in prices'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;login'= {
            cand --port 'Port of the callback server, replacing the redirect URI''s (register the URI with this port or *)'
            cand --timeout 'How long to wait for the browser to come back'
            cand --scopes 'Scopes to ask for, comma-separated'
            cand --redirect-uri 'The redirect URI registered for the app: http on 127.0.0.1, localhost or [::1], with a port'
            cand --client-key 'The app''s Client key (the Client secret comes from TIKTOK_CLIENT_SECRET only)'
            cand --auth-url 'Base URL of TikTok''s authorize page (`/v2/auth/authorize/` is appended)'
            cand --open-api-url 'Base URL of TikTok''s Open API (`/v2/oauth/token/`, `/v2/user/info/`… are appended)'
            cand --http-timeout 'Timeout of each request to TikTok'
            cand --refresh-before 'Refresh an access token that expires within this time before using it'
            cand --db 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)'
            cand --status 'List the logged-in accounts (handle, nickname, open id, scopes, expiry; no secret)'
            cand --refresh 'Refresh the account''s tokens now'
            cand --no-browser 'Print the authorize URL only; do not open a browser (always so without a display)'
            cand --json 'Print JSON (one object per account) instead of text'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;logout'= {
            cand --client-key 'The app''s Client key (the Client secret comes from TIKTOK_CLIENT_SECRET only)'
            cand --auth-url 'Base URL of TikTok''s authorize page (`/v2/auth/authorize/` is appended)'
            cand --open-api-url 'Base URL of TikTok''s Open API (`/v2/oauth/token/`, `/v2/user/info/`… are appended)'
            cand --http-timeout 'Timeout of each request to TikTok'
            cand --refresh-before 'Refresh an access token that expires within this time before using it'
            cand --db 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)'
            cand --local-only 'Only delete the tokens here; do not revoke them at TikTok (e.g. offline)'
            cand --json 'Print one JSON object instead of text'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;help'= {
            cand watch 'Connect to a live and print every event to stdout as NDJSON, one object per line'
            cand replay 'Print the events of a recording made with `watch --record`, exactly as watch printed them'
            cand sale 'Create, list, update and cancel sales made from chat claims'
            cand serve 'Follow lives, store everything, and serve an HTTP API, a WebSocket feed and the dashboard'
            cand gen-cert 'Make a self-signed certificate (cert.pem, key.pem) for local HTTPS with `serve`'
            cand export 'Write stored history as CSV (RFC 4180, UTF-8, header first)'
            cand login 'Log in with a TikTok account (Login Kit, desktop flow); list (--status) or refresh the accounts'
            cand logout 'Revoke an account''s authorisation at TikTok and delete its tokens from the database'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tiklive;help;watch'= {
        }
        &'tiklive;help;replay'= {
        }
        &'tiklive;help;sale'= {
            cand create 'Create a sale from a chat message (usually a claim), or a manual sale for a buyer'
            cand list 'List sales, oldest first'
            cand update 'Change a sale''s status, price, quantity or note'
            cand cancel 'Cancel a sale (nothing is deleted; its message can then be sold again)'
        }
        &'tiklive;help;sale;create'= {
        }
        &'tiklive;help;sale;list'= {
        }
        &'tiklive;help;sale;update'= {
        }
        &'tiklive;help;sale;cancel'= {
        }
        &'tiklive;help;serve'= {
        }
        &'tiklive;help;gen-cert'= {
        }
        &'tiklive;help;export'= {
        }
        &'tiklive;help;login'= {
        }
        &'tiklive;help;logout'= {
        }
        &'tiklive;help;help'= {
        }
    ]
    $completions[$command]
}
