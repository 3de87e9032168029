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
complete -c tiklive -n "__fish_tiklive_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l record -d 'Append every raw push frame received to FILE (4-byte big-endian length, then the frame)' -r -F
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l filter -d 'Print only these event types (comma-separated), e.g. `chat,gift`' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l claim-pattern -d 'Regular expression that replaces the claim keyword (default: JP, j\'prends, je prends…)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l dedupe-window -d 'How many recent message ids are remembered to drop duplicates' -r
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
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -l no-compress -d 'Ask TikTok for uncompressed payloads instead of gzip'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tiklive -n "__fish_tiklive_using_subcommand watch" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l threads -d 'Decoding threads (default: one per core)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l filter -d 'Print only these event types (comma-separated), e.g. `chat,gift`' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l claim-pattern -d 'Regular expression that replaces the claim keyword (default: JP, j\'prends, je prends…)' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l dedupe-window -d 'How many recent message ids are remembered to drop duplicates' -r
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l claims-only -d 'Print only chat lines that are claims ("JP 12", "j\'prends A3 M x2"…)'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l gift-streaks -d 'Also print each in-progress update of a gift streak (flagged "streaking": true)'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -l include-raw -d 'Add the decoded protobuf message as JSON under "raw"'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -s q -l quiet -d 'Print only errors on stderr'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -s v -l verbose -d 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tiklive -n "__fish_tiklive_using_subcommand replay" -s V -l version -d 'Print version'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay help" -f -a "watch" -d 'Connect to a live and print every event to stdout as NDJSON, one object per line'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay help" -f -a "replay" -d 'Print the events of a recording made with `watch --record`, exactly as watch printed them'
complete -c tiklive -n "__fish_tiklive_using_subcommand help; and not __fish_seen_subcommand_from watch replay help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
