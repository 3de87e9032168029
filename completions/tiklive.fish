# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tiklive_global_optspecs
    string join \n q/quiet v/verbose h/help V/version
end

function __fish_tiklive_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tiklive_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tiklive_using_subcommand
    set -l cmd (__fish_tiklive_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tiklive -n "__fish_tiklive_needs_command" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_needs_command" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_needs_command" -s h -l help -d 'Print help'
complete -c tiklive -n "__fish_tiklive_needs_command" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_needs_command" -f -a "watch" -d 'Connect to a live and print every event to stdout as NDJSON, one object per line'
complete -c tiklive -n "__fish_tiklive_needs_command" -f -a "replay" -d 'Print the events of a recording made with `watch --record`, exactly as watch printed them'
complete -c tiklive -n "__fish_tiklive_needs_command" -f -a "sale" -d 'Create, list, update and cancel sales made from chat claims'
complete -c tiklive -n "__fish_tiklive_needs_command" -f -a "serve" -d 'Follow lives, store everything, and serve an HTTP API, a WebSocket feed and the dashboard'
complete -c tiklive -n "__fish_tiklive_needs_command" -f -a "gen-cert" -d 'Make a self-signed certificate (cert.pem, key.pem) for local HTTPS with `serve`'
complete -c tiklive -n "__fish_tiklive_needs_command" -f -a "export" -d 'Write stored history as CSV (RFC 4180, UTF-8, header first)'
complete -c tiklive -n "__fish_tiklive_needs_command" -f -a "login" -d 'Log in with a TikTok account (Login Kit, desktop flow); list (--status) or refresh the accounts'
complete -c tiklive -n "__fish_tiklive_needs_command" -f -a "logout" -d 'Revoke an account\'s authorisation at TikTok and delete its tokens from the database'
complete -c tiklive -n "__fish_tiklive_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l record -d 'Append every raw push frame received to FILE (4-byte big-endian length, then the frame)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l filter -d 'Print only these event types (comma-separated), e.g. `chat,gift`' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l claim-pattern -d 'Regular expression that replaces the claim keyword (default: JP, j\'prends, je prends…)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l dedupe-window -d 'How many recent message ids are remembered to drop duplicates' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l db -d 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l commit-interval -d 'Commit stored events at least this often' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l commit-events -d 'Commit at most this many events in one transaction' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l price-list -d 'CSV of item code to unit price (`item,price[,currency]`, header optional), for --auto-sale' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l currency -d 'ISO 4217 currency of prices given without one' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l room-id -d 'Use this room id and skip the username lookup' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l web-url -d 'Base URL of TikTok\'s web site (live page and api-live)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l webcast-url -d 'Base URL of TikTok\'s webcast API (room info)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l sign-url -d 'Base URL of the signing service' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l sign-api-key -d 'API key for the signing service (sent as the x-api-key header)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l session-id -d 'TikTok session id for a logged-in connection (shared with TikTok and the signing service)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l tt-target-idc -d 'Data centre of the logged-in account (the tt-target-idc cookie), e.g. eu-ttp2' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l proxy -d 'HTTP proxy for every request, the WebSocket included, e.g. http://user:pass@host:3128' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l user-agent -d 'The User-Agent used towards TikTok; the signature is bound to it' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l max-retries -d 'Reconnect attempts after a drop before giving up' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l retry-delay -d 'Base delay between reconnects; attempt n waits n times this, plus jitter' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l dead-after -d 'Reconnect when no frame arrives for this long' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l heartbeat-interval -d 'Interval between heartbeats sent to TikTok' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l http-timeout -d 'Timeout of each HTTP request and of the WebSocket handshake' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l claims-only -d 'Print only chat lines that are claims ("JP 12", "j\'prends A3 M x2"…)'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l gift-streaks -d 'Also print each in-progress update of a gift streak (flagged "streaking": true)'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l include-raw -d 'Add the decoded protobuf message as JSON under "raw"'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l no-store -d 'Do not store anything; only print'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l auto-sale -d 'Create a pending sale for every claim as it arrives (item, variant and quantity from the claim)'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l no-compress -d 'Ask TikTok for uncompressed payloads instead of gzip'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l threads -d 'Decoding threads (default: one per core)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l host -d 'The host the recording was made from, as stored in `lives.host` (default: the file name)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l filter -d 'Print only these event types (comma-separated), e.g. `chat,gift`' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l claim-pattern -d 'Regular expression that replaces the claim keyword (default: JP, j\'prends, je prends…)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l dedupe-window -d 'How many recent message ids are remembered to drop duplicates' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l db -d 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l commit-interval -d 'Commit stored events at least this often' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l commit-events -d 'Commit at most this many events in one transaction' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l claims-only -d 'Print only chat lines that are claims ("JP 12", "j\'prends A3 M x2"…)'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l gift-streaks -d 'Also print each in-progress update of a gift streak (flagged "streaking": true)'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l include-raw -d 'Add the decoded protobuf message as JSON under "raw"'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l no-store -d 'Do not store anything; only print'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and not __fish_seen_subcommand_from create list update cancel help" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and not __fish_seen_subcommand_from create list update cancel help" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and not __fish_seen_subcommand_from create list update cancel help" -s h -l help -d 'Print help'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and not __fish_seen_subcommand_from create list update cancel help" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and not __fish_seen_subcommand_from create list update cancel help" -f -a "create" -d 'Create a sale from a chat message (usually a claim), or a manual sale for a buyer'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and not __fish_seen_subcommand_from create list update cancel help" -f -a "list" -d 'List sales, oldest first'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and not __fish_seen_subcommand_from create list update cancel help" -f -a "update" -d 'Change a sale\'s status, price, quantity or note'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and not __fish_seen_subcommand_from create list update cancel help" -f -a "cancel" -d 'Cancel a sale (nothing is deleted; its message can then be sold again)'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and not __fish_seen_subcommand_from create list update cancel help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l message -d 'The chat message the sale comes from (its msg_id, as printed by watch)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l buyer -d 'A manual sale for this buyer: `@handle` or TikTok\'s numeric user id (needs --item)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l live -d 'The live of a manual sale (default: the buyer\'s latest live)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l item -d 'Item code (default: the claim\'s)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l variant -d 'Variant, e.g. a size (default: the claim\'s)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l qty -d 'Quantity (default: the claim\'s, else 1)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l price -d 'Unit price, e.g. 12.50 or 12,50; `12.50 USD` names the currency' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l currency -d 'ISO 4217 currency of the price, when it names none' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l note -d 'A free note' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l db -d 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l force -d 'Create the sale even if the message already has one that is not cancelled'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -l json -d 'Print JSON (one object; NDJSON for lists) even on a terminal'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from list" -l live -d 'Only the sales of this live (its id in the database)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from list" -l buyer -d 'Only this buyer\'s sales: `@handle` or numeric user id' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from list" -l status -d 'Only sales with this status' -r -f -a "pending\t''
confirmed\t''
paid\t''
cancelled\t''"
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from list" -l since -d 'Only sales created at or after this time (RFC 3339, a date, a Unix time, or 24h / 7d back)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from list" -l db -d 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (one object; NDJSON for lists) even on a terminal'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -l status -d 'New status (`cancelled` is the same as `sale cancel`)' -r -f -a "pending\t''
confirmed\t''
paid\t''
cancelled\t''"
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -l item -d 'Item code (an empty text removes it)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -l variant -d 'Variant, e.g. a size (an empty text removes it)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -l price -d 'Unit price, e.g. 12.50 or 12,50; `12.50 USD` names the currency' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -l currency -d 'ISO 4217 currency of the price, when it names none' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -l qty -d 'Quantity' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -l note -d 'Replace the note (an empty text removes it)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -l db -d 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -l json -d 'Print JSON (one object; NDJSON for lists) even on a terminal'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from cancel" -l db -d 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from cancel" -l json -d 'Print JSON (one object; NDJSON for lists) even on a terminal'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from cancel" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from cancel" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from cancel" -s h -l help -d 'Print help'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from cancel" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a sale from a chat message (usually a claim), or a manual sale for a buyer'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from help" -f -a "list" -d 'List sales, oldest first'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from help" -f -a "update" -d 'Change a sale\'s status, price, quantity or note'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from help" -f -a "cancel" -d 'Cancel a sale (nothing is deleted; its message can then be sold again)'
complete -c tiklive -n "__fish_tiklive_using_subcommand sale; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l user -d 'A host to follow from the start (repeatable, or comma-separated in TIKTOK_USERNAME)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l bind -d 'The address to listen on. Anything but loopback needs TIKLIVE_API_TOKEN' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l port -d 'The port of the API, the dashboard and the WebSocket at /ws' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l ws-port -d 'A second port serving only the WebSocket feed, at any path (0: none)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l api-token -d 'The bearer token of the API and the WebSocket (required off loopback)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l cors-origin -d 'Allow browser requests from this origin, e.g. https://shop.example (repeatable; CORS is off without it)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l tls-cert -d 'Serve HTTPS and WSS with this certificate (PEM, e.g. from `tiklive gen-cert`)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l tls-key -d 'The private key of --tls-cert (PEM)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l log-file -d 'Also write logs to FILE, rotated daily (FILE.YYYY-MM-DD)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l claim-pattern -d 'Regular expression that replaces the claim keyword (default: JP, j\'prends, je prends…)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l offline-poll -d 'While a followed host is not live, check again this often, and follow each new live of theirs (0: stop at the first "not live")' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l commit-interval -d 'Commit stored events at least this often' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l commit-events -d 'Commit at most this many events in one transaction' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l redirect-uri -d 'The redirect URI of the dashboard\'s "Connect TikTok" flow, exactly as registered for the app: this server\'s /callback/ or /webhook/ URL (default: http(s)://localhost:PORT/callback/)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l scopes -d 'Scopes the dashboard\'s "Connect TikTok" asks for, comma-separated' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l client-key -d 'The app\'s Client key (the Client secret comes from TIKTOK_CLIENT_SECRET only)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l auth-url -d 'Base URL of TikTok\'s authorize page (`/v2/auth/authorize/` is appended)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l open-api-url -d 'Base URL of TikTok\'s Open API (`/v2/oauth/token/`, `/v2/user/info/`… are appended)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l db -d 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l price-list -d 'CSV of item code to unit price (`item,price[,currency]`, header optional), for --auto-sale' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l currency -d 'ISO 4217 currency of prices given without one' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l room-id -d 'Use this room id and skip the username lookup' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l web-url -d 'Base URL of TikTok\'s web site (live page and api-live)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l webcast-url -d 'Base URL of TikTok\'s webcast API (room info)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l sign-url -d 'Base URL of the signing service' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l sign-api-key -d 'API key for the signing service (sent as the x-api-key header)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l session-id -d 'TikTok session id for a logged-in connection (shared with TikTok and the signing service)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l tt-target-idc -d 'Data centre of the logged-in account (the tt-target-idc cookie), e.g. eu-ttp2' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l proxy -d 'HTTP proxy for every request, the WebSocket included, e.g. http://user:pass@host:3128' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l user-agent -d 'The User-Agent used towards TikTok; the signature is bound to it' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l max-retries -d 'Reconnect attempts after a drop before giving up' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l retry-delay -d 'Base delay between reconnects; attempt n waits n times this, plus jitter' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l dead-after -d 'Reconnect when no frame arrives for this long' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l heartbeat-interval -d 'Interval between heartbeats sent to TikTok' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l http-timeout -d 'Timeout of each HTTP request and of the WebSocket handshake' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l auto-sale -d 'Create a pending sale for every claim as it arrives (item, variant and quantity from the claim)'
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -l no-compress -d 'Ask TikTok for uncompressed payloads instead of gzip'
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tiklive -n "__fish_tiklive_using_subcommand serve" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand gen-cert" -l out-dir -d 'Directory for cert.pem and key.pem (created, private, if missing)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand gen-cert" -l host -d 'Another name or IP address the certificate is valid for, e.g. a LAN name or address so that a phone can reach the dashboard (repeatable; localhost, 127.0.0.1 and ::1 are always included)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand gen-cert" -l days -d 'Days of validity' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand gen-cert" -l force -d 'Replace existing cert.pem and key.pem'
complete -c tiklive -n "__fish_tiklive_using_subcommand gen-cert" -l json -d 'Print one JSON object instead of lines of text'
complete -c tiklive -n "__fish_tiklive_using_subcommand gen-cert" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand gen-cert" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand gen-cert" -s h -l help -d 'Print help'
complete -c tiklive -n "__fish_tiklive_using_subcommand gen-cert" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -l since -d 'Only rows at or after this time (RFC 3339, a date, a Unix time, or 24h / 7d / 90m back)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -l until -d 'Only rows before this time' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -l live -d 'Only this live (its id in the database, as in `sale list`)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -l room -d 'Only this TikTok room' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -l user -d 'Only this user\'s rows: `@handle` or numeric user id' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -s o -l out -d 'Write to FILE (atomically: a temporary file renamed into place) instead of stdout' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -l delimiter -d 'Field delimiter: one ASCII character, e.g. \';\' for French spreadsheets, or `tab` [default: \',\', or \';\' with --excel-fr]' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -l incremental -d 'Export only rows added since the last export with this NAME (a cursor kept in the database)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -l db -d 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -l bom -d 'Start with a UTF-8 byte order mark, for Excel'
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -l excel-fr -d 'For French Excel: a BOM, \';\' as delimiter and decimal commas in prices'
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tiklive -n "__fish_tiklive_using_subcommand export" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l port -d 'Port of the callback server, replacing the redirect URI\'s (register the URI with this port or *)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l timeout -d 'How long to wait for the browser to come back' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l scopes -d 'Scopes to ask for, comma-separated' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l redirect-uri -d 'The redirect URI registered for the app: http on 127.0.0.1, localhost or [::1], with a port' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l client-key -d 'The app\'s Client key (the Client secret comes from TIKTOK_CLIENT_SECRET only)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l auth-url -d 'Base URL of TikTok\'s authorize page (`/v2/auth/authorize/` is appended)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l open-api-url -d 'Base URL of TikTok\'s Open API (`/v2/oauth/token/`, `/v2/user/info/`… are appended)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l http-timeout -d 'Timeout of each request to TikTok' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l refresh-before -d 'Refresh an access token that expires within this time before using it' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l db -d 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l status -d 'List the logged-in accounts (handle, nickname, open id, scopes, expiry; no secret)'
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l refresh -d 'Refresh the account\'s tokens now'
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l no-browser -d 'Print the authorize URL only; do not open a browser (always so without a display)'
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -l json -d 'Print JSON (one object per account) instead of text'
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tiklive -n "__fish_tiklive_using_subcommand login" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -l client-key -d 'The app\'s Client key (the Client secret comes from TIKTOK_CLIENT_SECRET only)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -l auth-url -d 'Base URL of TikTok\'s authorize page (`/v2/auth/authorize/` is appended)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -l open-api-url -d 'Base URL of TikTok\'s Open API (`/v2/oauth/token/`, `/v2/user/info/`… are appended)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -l http-timeout -d 'Timeout of each request to TikTok' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -l refresh-before -d 'Refresh an access token that expires within this time before using it' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -l db -d 'The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -l local-only -d 'Only delete the tokens here; do not revoke them at TikTok (e.g. offline)'
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -l json -d 'Print one JSON object instead of text'
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -s h -l help -d 'Print help'
complete -c tiklive -n "__fish_tiklive_using_subcommand logout" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay sale serve gen-cert export login logout help" -f -a "watch" -d 'Connect to a live and print every event to stdout as NDJSON, one object per line'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay sale serve gen-cert export login logout help" -f -a "replay" -d 'Print the events of a recording made with `watch --record`, exactly as watch printed them'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay sale serve gen-cert export login logout help" -f -a "sale" -d 'Create, list, update and cancel sales made from chat claims'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay sale serve gen-cert export login logout help" -f -a "serve" -d 'Follow lives, store everything, and serve an HTTP API, a WebSocket feed and the dashboard'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay sale serve gen-cert export login logout help" -f -a "gen-cert" -d 'Make a self-signed certificate (cert.pem, key.pem) for local HTTPS with `serve`'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay sale serve gen-cert export login logout help" -f -a "export" -d 'Write stored history as CSV (RFC 4180, UTF-8, header first)'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay sale serve gen-cert export login logout help" -f -a "login" -d 'Log in with a TikTok account (Login Kit, desktop flow); list (--status) or refresh the accounts'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay sale serve gen-cert export login logout help" -f -a "logout" -d 'Revoke an account\'s authorisation at TikTok and delete its tokens from the database'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay sale serve gen-cert export login logout help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and __fish_seen_subcommand_from sale" -f -a "create" -d 'Create a sale from a chat message (usually a claim), or a manual sale for a buyer'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and __fish_seen_subcommand_from sale" -f -a "list" -d 'List sales, oldest first'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and __fish_seen_subcommand_from sale" -f -a "update" -d 'Change a sale\'s status, price, quantity or note'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and __fish_seen_subcommand_from sale" -f -a "cancel" -d 'Cancel a sale (nothing is deleted; its message can then be sold again)'
