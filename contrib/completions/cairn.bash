# bash completion for the cairn CLI. Install as /usr/share/bash-completion/completions/cairn
_cairn() {
  local cur prev cmd
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  cmd=${COMP_WORDS[1]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "send query verify stats ping help" -- "$cur"))
    return
  fi
  case "$prev" in
    --socket|--db) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    -o|--output) COMPREPLY=($(compgen -W "table json" -- "$cur")); return ;;
    --severity) COMPREPLY=($(compgen -W "emerg alert crit err warning notice info debug" -- "$cur")); return ;;
    --outcome) COMPREPLY=($(compgen -W "success failure unknown" -- "$cur")); return ;;
    --since|--until) COMPREPLY=($(compgen -W "now today yesterday 1h 24h 7d" -- "$cur")); return ;;
  esac
  local opts="--socket --help"
  case "$cmd" in
    send) opts+=" --type --severity --actor --action --target --outcome --message --time --sync --idem --stdin -o" ;;
    query) opts+=" --type --actor --since --until --severity --limit --after --follow --db -o" ;;
    verify) opts+=" --db" ;;
    stats) opts+=" --db -o" ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _cairn cairn
