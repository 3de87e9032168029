
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
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tiklive;watch' {
            [CompletionResult]::new('--record', '--record', [CompletionResultType]::ParameterName, 'Append every raw push frame received to FILE (4-byte big-endian length, then the frame)')
            [CompletionResult]::new('--filter', '--filter', [CompletionResultType]::ParameterName, 'Print only these event types (comma-separated), e.g. `chat,gift`')
            [CompletionResult]::new('--claim-pattern', '--claim-pattern', [CompletionResultType]::ParameterName, 'Regular expression that replaces the claim keyword (default: JP, j''prends, je prends…)')
            [CompletionResult]::new('--dedupe-window', '--dedupe-window', [CompletionResultType]::ParameterName, 'How many recent message ids are remembered to drop duplicates')
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
            [CompletionResult]::new('--filter', '--filter', [CompletionResultType]::ParameterName, 'Print only these event types (comma-separated), e.g. `chat,gift`')
            [CompletionResult]::new('--claim-pattern', '--claim-pattern', [CompletionResultType]::ParameterName, 'Regular expression that replaces the claim keyword (default: JP, j''prends, je prends…)')
            [CompletionResult]::new('--dedupe-window', '--dedupe-window', [CompletionResultType]::ParameterName, 'How many recent message ids are remembered to drop duplicates')
            [CompletionResult]::new('--claims-only', '--claims-only', [CompletionResultType]::ParameterName, 'Print only chat lines that are claims ("JP 12", "j''prends A3 M x2"…)')
            [CompletionResult]::new('--gift-streaks', '--gift-streaks', [CompletionResultType]::ParameterName, 'Also print each in-progress update of a gift streak (flagged "streaking": true)')
            [CompletionResult]::new('--include-raw', '--include-raw', [CompletionResultType]::ParameterName, 'Add the decoded protobuf message as JSON under "raw"')
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
        'tiklive;help' {
            [CompletionResult]::new('watch', 'watch', [CompletionResultType]::ParameterValue, 'Connect to a live and print every event to stdout as NDJSON, one object per line')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Print the events of a recording made with `watch --record`, exactly as watch printed them')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tiklive;help;watch' {
            break
        }
        'tiklive;help;replay' {
            break
        }
        'tiklive;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
