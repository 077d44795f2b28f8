# bash completion for the cairn CLI. Install as /usr/share/bash-completion/completions/cairn
_cairn() {
  local cur prev cmd
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  cmd=${COMP_WORDS[1]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "send query report verify stats ping key checkpoint prove help" -- "$cur"))
    return
  fi
  case "$prev" in
    --socket|--db|--cursor-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    -o|--output)
      case "$cmd" in
        query) COMPREPLY=($(compgen -W "short verbose json json-pretty cat export" -- "$cur")) ;;
        report) COMPREPLY=($(compgen -W "text json" -- "$cur")) ;;
        *) COMPREPLY=($(compgen -W "table json" -- "$cur")) ;;
      esac
      return ;;
    -p|--severity) COMPREPLY=($(compgen -W "emerg alert crit err warning notice info debug" -- "$cur")); return ;;
    --outcome) COMPREPLY=($(compgen -W "success failure unknown" -- "$cur")); return ;;
    -S|-U|--since|--until) COMPREPLY=($(compgen -W "now today yesterday tomorrow -1h -24h -7d" -- "$cur")); return ;;
  esac
  local opts="--socket --help"
  case "$cmd" in
    send) opts+=" --type --severity --actor --action --target --outcome --message --time --sync --idem --stdin -o" ;;
    query) opts+=" --type --actor --action --target --comm --outcome --uid --pid --gid --severity --grep
                   --since --until --lines --all --reverse --count --output --utc --no-pager --follow
                   --after --cursor-file --db" ;;
    report) opts+=" --type --actor --action --target --comm --outcome --uid --pid --gid --severity --grep
                    --since --until --top --output --db" ;;
    verify) opts+=" --db" ;;
    stats) opts+=" --db -o" ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _cairn cairn
