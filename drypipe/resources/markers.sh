# drypipe: reading a task's state marker in bash.  Part of the task runtime (task-lib.sh) and of
# the scripts the SSH executor runs on a remote host: one reader of the markers in bash.

__rank() {  # sets __r to the order of state $1 in a run (drypipe.state.rank: tests check they agree)
    case $1 in
        waiting) __r=0 ;;
        ready) __r=1 ;;
        launched) __r=2 ;;
        step-started.*) __r=$((3 + 2 * 10#${1#*.})) ;;
        step-completed.*) __r=$((4 + 2 * 10#${1#*.})) ;;
        *) __r=1000000000 ;;  # completed, failed.N, killed.N, timed-out.N, lost
    esac
}

__marker_in() {  # __marker_in DIR: sets __state to the state of the task of control dir DIR ("" without
    # a marker).  A crash between the link and the unlink of a move leaves two names: the later state counts.
    local m s r=-1 __r
    __state=""
    for m in "$1"/state.*; do
        [[ -e $m && $m != *.tmp ]] || continue
        s=${m##*/state.}
        [[ -z $__state ]] && { __state=$s; continue; }  # one marker: no ranking
        ((r < 0)) && { __rank "$__state"; r=$__r; }
        __rank "$s"
        ((__r > r)) && { __state=$s; r=$__r; }
    done
    [[ -n $__state ]]
}
