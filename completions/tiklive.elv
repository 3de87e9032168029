
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
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tiklive;watch'= {
            cand --record 'Append every raw push frame received to FILE (4-byte big-endian length, then the frame)'
            cand --filter 'Print only these event types (comma-separated), e.g. `chat,gift`'
            cand --claim-pattern 'Regular expression that replaces the claim keyword (default: JP, j''prends, je prends…)'
            cand --dedupe-window 'How many recent message ids are remembered to drop duplicates'
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
            cand --filter 'Print only these event types (comma-separated), e.g. `chat,gift`'
            cand --claim-pattern 'Regular expression that replaces the claim keyword (default: JP, j''prends, je prends…)'
            cand --dedupe-window 'How many recent message ids are remembered to drop duplicates'
            cand --claims-only 'Print only chat lines that are claims ("JP 12", "j''prends A3 M x2"…)'
            cand --gift-streaks 'Also print each in-progress update of a gift streak (flagged "streaking": true)'
            cand --include-raw 'Add the decoded protobuf message as JSON under "raw"'
            cand -q 'Print only errors on stderr'
            cand --quiet 'Print only errors on stderr'
            cand -v 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand --verbose 'More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tiklive;help'= {
            cand watch 'Connect to a live and print every event to stdout as NDJSON, one object per line'
            cand replay 'Print the events of a recording made with `watch --record`, exactly as watch printed them'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tiklive;help;watch'= {
        }
        &'tiklive;help;replay'= {
        }
        &'tiklive;help;help'= {
        }
    ]
    $completions[$command]
}
