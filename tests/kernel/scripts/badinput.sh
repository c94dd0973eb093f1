# Every bad input is EINVAL and leaves the old value; good input is taken.
. ./lib.sh
load || { echo "insmod failed"; exit $KSFT_FAIL; }

long=$(printf '%040d' 7)
page=$(head -c 5000 /dev/zero | tr '\0' '1')
set_ok() { expect "$1 <- '$2'" "$(wr $OSLAB/vif1/$1 "$2")" ok; }

set_ok goal 250
set_ok weight 3
set_ok min_credit 10
for f in pid goal weight min_credit; do
	before=$(cat $OSLAB/vif1/$f)
	for v in "" abc -1 5x "5 6" " 5" 0x10 "5

" "5	" 99999999999999999999 4294967296 "$long" "$page"; do
		shown=$(printf '%s' "$v" | head -c 12 | tr '\n' '~')
		expect "$f '$shown'... EINVAL" "$(wr $OSLAB/vif1/$f "$v")" EINVAL
	done
	expect "$f unchanged" "$(cat $OSLAB/vif1/$f)" "$before"
done
expect "weight 0 EINVAL" "$(wr $OSLAB/vif1/weight 0)" EINVAL
expect "weight 10001 EINVAL" "$(wr $OSLAB/vif1/weight 10001)" EINVAL
expect "min_credit 101 EINVAL" "$(wr $OSLAB/vif1/min_credit 101)" EINVAL
expect "goal 1000001 EINVAL" "$(wr $OSLAB/vif1/goal 1000001)" EINVAL
expect "pid 2^31 EINVAL" "$(wr $OSLAB/vif1/pid 2147483648)" EINVAL
r=$(wr $OSLAB/vif1/stat 1)
check "stat is read-only ($r)" test "$r" != ok
expect "values after bad input" \
	"$(cat $OSLAB/vif1/goal $OSLAB/vif1/weight $OSLAB/vif1/min_credit | tr '\n' ' ')" "250 3 10 "
set_ok weight "10000
"
set_ok min_credit 100
set_ok goal 1000000
expect "target = max(goal, min_credit x link)" "$(field 1 target_mbps)" 1000000
set_ok goal 0
expect "min_credit floor: 100% of 10000" "$(field 1 target_mbps)" 10000
set_ok weight +5
expect "leading plus" "$(cat $OSLAB/vif1/weight)" 5
check "rmmod" unload
finish
