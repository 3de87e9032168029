
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'tiklive' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'tiklive'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'tiklive' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('watch', 'watch', [CompletionResultType]::ParameterValue, 'Connect to a live and print every event to stdout as NDJSON, one object per line')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Print the events of a recording made with `watch --record`, exactly as watch printed them')
            [CompletionResult]::new('sale', 'sale', [CompletionResultType]::ParameterValue, 'Create, list, update and cancel sales made from chat claims')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Follow lives, store everything, and serve an HTTP API, a WebSocket feed and the dashboard')
            [CompletionResult]::new('gen-cert', 'gen-cert', [CompletionResultType]::ParameterValue, 'Make a self-signed certificate (cert.pem, key.pem) for local HTTPS with `serve`')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write stored history as CSV (RFC 4180, UTF-8, header first)')
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Log in with a TikTok account (Login Kit, desktop flow); list (--status) or refresh the accounts')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Revoke an account''s authorisation at TikTok and delete its tokens from the database')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tiklive;watch' {
            [CompletionResult]::new('--record', '--record', [CompletionResultType]::ParameterName, 'Append every raw push frame received to FILE (4-byte big-endian length, then the frame)')
            [CompletionResult]::new('--filter', '--filter', [CompletionResultType]::ParameterName, 'Print only these event types (comma-separated), e.g. `chat,gift`')
            [CompletionResult]::new('--claim-pattern', '--claim-pattern', [CompletionResultType]::ParameterName, 'Regular expression that replaces the claim keyword (default: JP, j''prends, je prends…)')
            [CompletionResult]::new('--dedupe-window', '--dedupe-window', [CompletionResultType]::ParameterName, 'How many recent message ids are remembered to drop duplicates')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)')
            [CompletionResult]::new('--commit-interval', '--commit-interval', [CompletionResultType]::ParameterName, 'Commit stored events at least this often')
            [CompletionResult]::new('--commit-events', '--commit-events', [CompletionResultType]::ParameterName, 'Commit at most this many events in one transaction')
            [CompletionResult]::new('--price-list', '--price-list', [CompletionResultType]::ParameterName, 'CSV of item code to unit price (`item,price[,currency]`, header optional), for --auto-sale')
            [CompletionResult]::new('--currency', '--currency', [CompletionResultType]::ParameterName, 'ISO 4217 currency of prices given without one')
            [CompletionResult]::new('--room-id', '--room-id', [CompletionResultType]::ParameterName, 'Use this room id and skip the username lookup')
            [CompletionResult]::new('--web-url', '--web-url', [CompletionResultType]::ParameterName, 'Base URL of TikTok''s web site (live page and api-live)')
            [CompletionResult]::new('--webcast-url', '--webcast-url', [CompletionResultType]::ParameterName, 'Base URL of TikTok''s webcast API (room info)')
            [CompletionResult]::new('--sign-url', '--sign-url', [CompletionResultType]::ParameterName, 'Base URL of the signing service')
            [CompletionResult]::new('--sign-api-key', '--sign-api-key', [CompletionResultType]::ParameterName, 'API key for the signing service (sent as the x-api-key header)')
            [CompletionResult]::new('--session-id', '--session-id', [CompletionResultType]::ParameterName, 'TikTok session id for a logged-in connection (shared with TikTok and the signing service)')
            [CompletionResult]::new('--tt-target-idc', '--tt-target-idc', [CompletionResultType]::ParameterName, 'Data centre of the logged-in account (the tt-target-idc cookie), e.g. eu-ttp2')
            [CompletionResult]::new('--proxy', '--proxy', [CompletionResultType]::ParameterName, 'HTTP proxy for every request, the WebSocket included, e.g. http://user:pass@host:3128')
            [CompletionResult]::new('--user-agent', '--user-agent', [CompletionResultType]::ParameterName, 'The User-Agent used towards TikTok; the signature is bound to it')
            [CompletionResult]::new('--max-retries', '--max-retries', [CompletionResultType]::ParameterName, 'Reconnect attempts after a drop before giving up')
            [CompletionResult]::new('--retry-delay', '--retry-delay', [CompletionResultType]::ParameterName, 'Base delay between reconnects; attempt n waits n times this, plus jitter')
            [CompletionResult]::new('--dead-after', '--dead-after', [CompletionResultType]::ParameterName, 'Reconnect when no frame arrives for this long')
            [CompletionResult]::new('--heartbeat-interval', '--heartbeat-interval', [CompletionResultType]::ParameterName, 'Interval between heartbeats sent to TikTok')
            [CompletionResult]::new('--http-timeout', '--http-timeout', [CompletionResultType]::ParameterName, 'Timeout of each HTTP request and of the WebSocket handshake')
            [CompletionResult]::new('--claims-only', '--claims-only', [CompletionResultType]::ParameterName, 'Print only chat lines that are claims ("JP 12", "j''prends A3 M x2"…)')
            [CompletionResult]::new('--gift-streaks', '--gift-streaks', [CompletionResultType]::ParameterName, 'Also print each in-progress update of a gift streak (flagged "streaking": true)')
            [CompletionResult]::new('--include-raw', '--include-raw', [CompletionResultType]::ParameterName, 'Add the decoded protobuf message as JSON under "raw"')
            [CompletionResult]::new('--no-store', '--no-store', [CompletionResultType]::ParameterName, 'Do not store anything; only print')
            [CompletionResult]::new('--auto-sale', '--auto-sale', [CompletionResultType]::ParameterName, 'Create a pending sale for every claim as it arrives (item, variant and quantity from the claim)')
            [CompletionResult]::new('--no-compress', '--no-compress', [CompletionResultType]::ParameterName, 'Ask TikTok for uncompressed payloads instead of gzip')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;replay' {
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Decoding threads (default: one per core)')
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'The host the recording was made from, as stored in `lives.host` (default: the file name)')
            [CompletionResult]::new('--filter', '--filter', [CompletionResultType]::ParameterName, 'Print only these event types (comma-separated), e.g. `chat,gift`')
            [CompletionResult]::new('--claim-pattern', '--claim-pattern', [CompletionResultType]::ParameterName, 'Regular expression that replaces the claim keyword (default: JP, j''prends, je prends…)')
            [CompletionResult]::new('--dedupe-window', '--dedupe-window', [CompletionResultType]::ParameterName, 'How many recent message ids are remembered to drop duplicates')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)')
            [CompletionResult]::new('--commit-interval', '--commit-interval', [CompletionResultType]::ParameterName, 'Commit stored events at least this often')
            [CompletionResult]::new('--commit-events', '--commit-events', [CompletionResultType]::ParameterName, 'Commit at most this many events in one transaction')
            [CompletionResult]::new('--claims-only', '--claims-only', [CompletionResultType]::ParameterName, 'Print only chat lines that are claims ("JP 12", "j''prends A3 M x2"…)')
            [CompletionResult]::new('--gift-streaks', '--gift-streaks', [CompletionResultType]::ParameterName, 'Also print each in-progress update of a gift streak (flagged "streaking": true)')
            [CompletionResult]::new('--include-raw', '--include-raw', [CompletionResultType]::ParameterName, 'Add the decoded protobuf message as JSON under "raw"')
            [CompletionResult]::new('--no-store', '--no-store', [CompletionResultType]::ParameterName, 'Do not store anything; only print')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;sale' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a sale from a chat message (usually a claim), or a manual sale for a buyer')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sales, oldest first')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a sale''s status, price, quantity or note')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Cancel a sale (nothing is deleted; its message can then be sold again)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tiklive;sale;create' {
            [CompletionResult]::new('--message', '--message', [CompletionResultType]::ParameterName, 'The chat message the sale comes from (its msg_id, as printed by watch)')
            [CompletionResult]::new('--buyer', '--buyer', [CompletionResultType]::ParameterName, 'A manual sale for this buyer: `@handle` or TikTok''s numeric user id (needs --item)')
            [CompletionResult]::new('--live', '--live', [CompletionResultType]::ParameterName, 'The live of a manual sale (default: the buyer''s latest live)')
            [CompletionResult]::new('--item', '--item', [CompletionResultType]::ParameterName, 'Item code (default: the claim''s)')
            [CompletionResult]::new('--variant', '--variant', [CompletionResultType]::ParameterName, 'Variant, e.g. a size (default: the claim''s)')
            [CompletionResult]::new('--qty', '--qty', [CompletionResultType]::ParameterName, 'Quantity (default: the claim''s, else 1)')
            [CompletionResult]::new('--price', '--price', [CompletionResultType]::ParameterName, 'Unit price, e.g. 12.50 or 12,50; `12.50 USD` names the currency')
            [CompletionResult]::new('--currency', '--currency', [CompletionResultType]::ParameterName, 'ISO 4217 currency of the price, when it names none')
            [CompletionResult]::new('--note', '--note', [CompletionResultType]::ParameterName, 'A free note')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Create the sale even if the message already has one that is not cancelled')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (one object; NDJSON for lists) even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;sale;list' {
            [CompletionResult]::new('--live', '--live', [CompletionResultType]::ParameterName, 'Only the sales of this live (its id in the database)')
            [CompletionResult]::new('--buyer', '--buyer', [CompletionResultType]::ParameterName, 'Only this buyer''s sales: `@handle` or numeric user id')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only sales with this status')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only sales created at or after this time (RFC 3339, a date, a Unix time, or 24h / 7d back)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (one object; NDJSON for lists) even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;sale;update' {
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'New status (`cancelled` is the same as `sale cancel`)')
            [CompletionResult]::new('--item', '--item', [CompletionResultType]::ParameterName, 'Item code (an empty text removes it)')
            [CompletionResult]::new('--variant', '--variant', [CompletionResultType]::ParameterName, 'Variant, e.g. a size (an empty text removes it)')
            [CompletionResult]::new('--price', '--price', [CompletionResultType]::ParameterName, 'Unit price, e.g. 12.50 or 12,50; `12.50 USD` names the currency')
            [CompletionResult]::new('--currency', '--currency', [CompletionResultType]::ParameterName, 'ISO 4217 currency of the price, when it names none')
            [CompletionResult]::new('--qty', '--qty', [CompletionResultType]::ParameterName, 'Quantity')
            [CompletionResult]::new('--note', '--note', [CompletionResultType]::ParameterName, 'Replace the note (an empty text removes it)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (one object; NDJSON for lists) even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;sale;cancel' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (one object; NDJSON for lists) even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;sale;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a sale from a chat message (usually a claim), or a manual sale for a buyer')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sales, oldest first')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a sale''s status, price, quantity or note')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Cancel a sale (nothing is deleted; its message can then be sold again)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tiklive;sale;help;create' {
            break
        }
        'tiklive;sale;help;list' {
            break
        }
        'tiklive;sale;help;update' {
            break
        }
        'tiklive;sale;help;cancel' {
            break
        }
        'tiklive;sale;help;help' {
            break
        }
        'tiklive;serve' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'A host to follow from the start (repeatable, or comma-separated in TIKTOK_USERNAME)')
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'The address to listen on. Anything but loopback needs TIKLIVE_API_TOKEN')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'The port of the API, the dashboard and the WebSocket at /ws')
            [CompletionResult]::new('--ws-port', '--ws-port', [CompletionResultType]::ParameterName, 'A second port serving only the WebSocket feed, at any path (0: none)')
            [CompletionResult]::new('--api-token', '--api-token', [CompletionResultType]::ParameterName, 'The bearer token of the API and the WebSocket (required off loopback)')
            [CompletionResult]::new('--cors-origin', '--cors-origin', [CompletionResultType]::ParameterName, 'Allow browser requests from this origin, e.g. https://shop.example (repeatable; CORS is off without it)')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'Serve HTTPS and WSS with this certificate (PEM, e.g. from `tiklive gen-cert`)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The private key of --tls-cert (PEM)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also write logs to FILE, rotated daily (FILE.YYYY-MM-DD)')
            [CompletionResult]::new('--claim-pattern', '--claim-pattern', [CompletionResultType]::ParameterName, 'Regular expression that replaces the claim keyword (default: JP, j''prends, je prends…)')
            [CompletionResult]::new('--offline-poll', '--offline-poll', [CompletionResultType]::ParameterName, 'While a followed host is not live, check again this often, and follow each new live of theirs (0: stop at the first "not live")')
            [CompletionResult]::new('--commit-interval', '--commit-interval', [CompletionResultType]::ParameterName, 'Commit stored events at least this often')
            [CompletionResult]::new('--commit-events', '--commit-events', [CompletionResultType]::ParameterName, 'Commit at most this many events in one transaction')
            [CompletionResult]::new('--redirect-uri', '--redirect-uri', [CompletionResultType]::ParameterName, 'The redirect URI of the dashboard''s "Connect TikTok" flow, exactly as registered for the app: this server''s /callback/ or /webhook/ URL (default: http(s)://localhost:PORT/callback/)')
            [CompletionResult]::new('--scopes', '--scopes', [CompletionResultType]::ParameterName, 'Scopes the dashboard''s "Connect TikTok" asks for, comma-separated')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The app''s Client key (the Client secret comes from TIKTOK_CLIENT_SECRET only)')
            [CompletionResult]::new('--auth-url', '--auth-url', [CompletionResultType]::ParameterName, 'Base URL of TikTok''s authorize page (`/v2/auth/authorize/` is appended)')
            [CompletionResult]::new('--open-api-url', '--open-api-url', [CompletionResultType]::ParameterName, 'Base URL of TikTok''s Open API (`/v2/oauth/token/`, `/v2/user/info/`… are appended)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)')
            [CompletionResult]::new('--price-list', '--price-list', [CompletionResultType]::ParameterName, 'CSV of item code to unit price (`item,price[,currency]`, header optional), for --auto-sale')
            [CompletionResult]::new('--currency', '--currency', [CompletionResultType]::ParameterName, 'ISO 4217 currency of prices given without one')
            [CompletionResult]::new('--room-id', '--room-id', [CompletionResultType]::ParameterName, 'Use this room id and skip the username lookup')
            [CompletionResult]::new('--web-url', '--web-url', [CompletionResultType]::ParameterName, 'Base URL of TikTok''s web site (live page and api-live)')
            [CompletionResult]::new('--webcast-url', '--webcast-url', [CompletionResultType]::ParameterName, 'Base URL of TikTok''s webcast API (room info)')
            [CompletionResult]::new('--sign-url', '--sign-url', [CompletionResultType]::ParameterName, 'Base URL of the signing service')
            [CompletionResult]::new('--sign-api-key', '--sign-api-key', [CompletionResultType]::ParameterName, 'API key for the signing service (sent as the x-api-key header)')
            [CompletionResult]::new('--session-id', '--session-id', [CompletionResultType]::ParameterName, 'TikTok session id for a logged-in connection (shared with TikTok and the signing service)')
            [CompletionResult]::new('--tt-target-idc', '--tt-target-idc', [CompletionResultType]::ParameterName, 'Data centre of the logged-in account (the tt-target-idc cookie), e.g. eu-ttp2')
            [CompletionResult]::new('--proxy', '--proxy', [CompletionResultType]::ParameterName, 'HTTP proxy for every request, the WebSocket included, e.g. http://user:pass@host:3128')
            [CompletionResult]::new('--user-agent', '--user-agent', [CompletionResultType]::ParameterName, 'The User-Agent used towards TikTok; the signature is bound to it')
            [CompletionResult]::new('--max-retries', '--max-retries', [CompletionResultType]::ParameterName, 'Reconnect attempts after a drop before giving up')
            [CompletionResult]::new('--retry-delay', '--retry-delay', [CompletionResultType]::ParameterName, 'Base delay between reconnects; attempt n waits n times this, plus jitter')
            [CompletionResult]::new('--dead-after', '--dead-after', [CompletionResultType]::ParameterName, 'Reconnect when no frame arrives for this long')
            [CompletionResult]::new('--heartbeat-interval', '--heartbeat-interval', [CompletionResultType]::ParameterName, 'Interval between heartbeats sent to TikTok')
            [CompletionResult]::new('--http-timeout', '--http-timeout', [CompletionResultType]::ParameterName, 'Timeout of each HTTP request and of the WebSocket handshake')
            [CompletionResult]::new('--auto-sale', '--auto-sale', [CompletionResultType]::ParameterName, 'Create a pending sale for every claim as it arrives (item, variant and quantity from the claim)')
            [CompletionResult]::new('--no-compress', '--no-compress', [CompletionResultType]::ParameterName, 'Ask TikTok for uncompressed payloads instead of gzip')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;gen-cert' {
            [CompletionResult]::new('--out-dir', '--out-dir', [CompletionResultType]::ParameterName, 'Directory for cert.pem and key.pem (created, private, if missing)')
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'Another name or IP address the certificate is valid for, e.g. a LAN name or address so that a phone can reach the dashboard (repeatable; localhost, 127.0.0.1 and ::1 are always included)')
            [CompletionResult]::new('--days', '--days', [CompletionResultType]::ParameterName, 'Days of validity')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Replace existing cert.pem and key.pem')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object instead of lines of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;export' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only rows at or after this time (RFC 3339, a date, a Unix time, or 24h / 7d / 90m back)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Only rows before this time')
            [CompletionResult]::new('--live', '--live', [CompletionResultType]::ParameterName, 'Only this live (its id in the database, as in `sale list`)')
            [CompletionResult]::new('--room', '--room', [CompletionResultType]::ParameterName, 'Only this TikTok room')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only this user''s rows: `@handle` or numeric user id')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Write to FILE (atomically: a temporary file renamed into place) instead of stdout')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Write to FILE (atomically: a temporary file renamed into place) instead of stdout')
            [CompletionResult]::new('--delimiter', '--delimiter', [CompletionResultType]::ParameterName, 'Field delimiter: one ASCII character, e.g. '';'' for French spreadsheets, or `tab` [default: '','', or '';'' with --excel-fr]')
            [CompletionResult]::new('--incremental', '--incremental', [CompletionResultType]::ParameterName, 'Export only rows added since the last export with this NAME (a cursor kept in the database)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)')
            [CompletionResult]::new('--bom', '--bom', [CompletionResultType]::ParameterName, 'Start with a UTF-8 byte order mark, for Excel')
            [CompletionResult]::new('--excel-fr', '--excel-fr', [CompletionResultType]::ParameterName, 'For French Excel: a BOM, '';'' as delimiter and decimal commas in prices')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;login' {
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port of the callback server, replacing the redirect URI''s (register the URI with this port or *)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for the browser to come back')
            [CompletionResult]::new('--scopes', '--scopes', [CompletionResultType]::ParameterName, 'Scopes to ask for, comma-separated')
            [CompletionResult]::new('--redirect-uri', '--redirect-uri', [CompletionResultType]::ParameterName, 'The redirect URI registered for the app: http on 127.0.0.1, localhost or [::1], with a port')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The app''s Client key (the Client secret comes from TIKTOK_CLIENT_SECRET only)')
            [CompletionResult]::new('--auth-url', '--auth-url', [CompletionResultType]::ParameterName, 'Base URL of TikTok''s authorize page (`/v2/auth/authorize/` is appended)')
            [CompletionResult]::new('--open-api-url', '--open-api-url', [CompletionResultType]::ParameterName, 'Base URL of TikTok''s Open API (`/v2/oauth/token/`, `/v2/user/info/`… are appended)')
            [CompletionResult]::new('--http-timeout', '--http-timeout', [CompletionResultType]::ParameterName, 'Timeout of each request to TikTok')
            [CompletionResult]::new('--refresh-before', '--refresh-before', [CompletionResultType]::ParameterName, 'Refresh an access token that expires within this time before using it')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'List the logged-in accounts (handle, nickname, open id, scopes, expiry; no secret)')
            [CompletionResult]::new('--refresh', '--refresh', [CompletionResultType]::ParameterName, 'Refresh the account''s tokens now')
            [CompletionResult]::new('--no-browser', '--no-browser', [CompletionResultType]::ParameterName, 'Print the authorize URL only; do not open a browser (always so without a display)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (one object per account) instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;logout' {
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The app''s Client key (the Client secret comes from TIKTOK_CLIENT_SECRET only)')
            [CompletionResult]::new('--auth-url', '--auth-url', [CompletionResultType]::ParameterName, 'Base URL of TikTok''s authorize page (`/v2/auth/authorize/` is appended)')
            [CompletionResult]::new('--open-api-url', '--open-api-url', [CompletionResultType]::ParameterName, 'Base URL of TikTok''s Open API (`/v2/oauth/token/`, `/v2/user/info/`… are appended)')
            [CompletionResult]::new('--http-timeout', '--http-timeout', [CompletionResultType]::ParameterName, 'Timeout of each request to TikTok')
            [CompletionResult]::new('--refresh-before', '--refresh-before', [CompletionResultType]::ParameterName, 'Refresh an access token that expires within this time before using it')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)')
            [CompletionResult]::new('--local-only', '--local-only', [CompletionResultType]::ParameterName, 'Only delete the tokens here; do not revoke them at TikTok (e.g. offline)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object instead of text')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors on stderr')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tiklive;help' {
            [CompletionResult]::new('watch', 'watch', [CompletionResultType]::ParameterValue, 'Connect to a live and print every event to stdout as NDJSON, one object per line')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Print the events of a recording made with `watch --record`, exactly as watch printed them')
            [CompletionResult]::new('sale', 'sale', [CompletionResultType]::ParameterValue, 'Create, list, update and cancel sales made from chat claims')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Follow lives, store everything, and serve an HTTP API, a WebSocket feed and the dashboard')
            [CompletionResult]::new('gen-cert', 'gen-cert', [CompletionResultType]::ParameterValue, 'Make a self-signed certificate (cert.pem, key.pem) for local HTTPS with `serve`')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write stored history as CSV (RFC 4180, UTF-8, header first)')
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Log in with a TikTok account (Login Kit, desktop flow); list (--status) or refresh the accounts')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Revoke an account''s authorisation at TikTok and delete its tokens from the database')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tiklive;help;watch' {
            break
        }
        'tiklive;help;replay' {
            break
        }
        'tiklive;help;sale' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a sale from a chat message (usually a claim), or a manual sale for a buyer')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sales, oldest first')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a sale''s status, price, quantity or note')
            [CompletionResult]::new('cancel', 'cancel', [CompletionResultType]::ParameterValue, 'Cancel a sale (nothing is deleted; its message can then be sold again)')
            break
        }
        'tiklive;help;sale;create' {
            break
        }
        'tiklive;help;sale;list' {
            break
        }
        'tiklive;help;sale;update' {
            break
        }
        'tiklive;help;sale;cancel' {
            break
        }
        'tiklive;help;serve' {
            break
        }
        'tiklive;help;gen-cert' {
            break
        }
        'tiklive;help;export' {
            break
        }
        'tiklive;help;login' {
            break
        }
        'tiklive;help;logout' {
            break
        }
        'tiklive;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
