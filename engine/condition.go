package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Condition is an expr-lang program compiled once at load time. The seed's
// shorthands are accepted: `null` means nil and `5%` means 5.
type Condition struct {
	Source  string
	program *vm.Program
	refs    []Ref
}

// Ref is a name a condition or template reads: a root identifier and, when
// it is a member access, the first member (`state.previousReplicaCount`).
type Ref struct {
	Root   string
	Member string
}

func (r Ref) String() string {
	if r.Member == "" {
		return r.Root
	}
	return r.Root + "." + r.Member
}

// CompileCondition compiles a boolean condition.
func CompileCondition(src string) (*Condition, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("empty condition")
	}
	return compileExpr(src, true)
}

func compileExpr(src string, asBool bool) (*Condition, error) {
	code := rewriteShorthands(src)
	if len(code) > MaxExprLen {
		return nil, fmt.Errorf("is %d characters long; an expression may have at most %d", len(code), MaxExprLen)
	}
	tree, err := parser.Parse(code)
	if err != nil {
		return nil, fmt.Errorf("does not compile: %s", firstLine(err.Error()))
	}
	if err := checkBounded(tree.Node); err != nil {
		return nil, err
	}
	opts := []expr.Option{expr.AllowUndefinedVariables(), expr.MaxNodes(MaxExprNodes), expr.Patch(guardPatch{})}
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	prog, err := expr.Compile(code, opts...)
	if err != nil {
		return nil, fmt.Errorf("does not compile: %s", firstLine(err.Error()))
	}
	return &Condition{Source: src, program: prog, refs: collectRefs(tree.Node)}, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Refs lists the names the condition reads.
func (c *Condition) Refs() []Ref { return c.refs }

// Eval runs the condition against env under the default time limit
// (EvalLimit).
func (c *Condition) Eval(env map[string]any) (bool, error) {
	return c.EvalContext(context.Background(), env)
}

// EvalContext runs the condition against env. It stops with an error when
// ctx ends or EvalLimit passes, whichever comes first.
func (c *Condition) EvalContext(ctx context.Context, env map[string]any) (bool, error) {
	out, err := c.ValueContext(ctx, env)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("condition %q gave %T, not a boolean", c.Source, out)
	}
	return b, nil
}

// Value runs the program under the default time limit and returns its
// result.
func (c *Condition) Value(env map[string]any) (any, error) {
	return c.ValueContext(context.Background(), env)
}

// Limits on expressions. A program longer or larger than these is refused
// when it is compiled; one that runs longer than its step's remaining time
// (or EvalLimit, when that is shorter) is stopped with an error.
var (
	MaxExprLen        = 4096
	MaxExprNodes uint = 1000
	MaxRangeLen       = 10000
	EvalLimit         = 5 * time.Second
)

// guardName is the function the compiler's patch wraps every predicate body
// with (the bodies of all, map, filter, reduce …: the only loops expr has),
// so a long-running program notices its deadline.
const guardName = "__runbookbot_guard"

type guardPatch struct{}

func (guardPatch) Visit(n *ast.Node) {
	if p, ok := (*n).(*ast.PredicateNode); ok {
		if call, ok := p.Node.(*ast.CallNode); ok {
			if id, ok := call.Callee.(*ast.IdentifierNode); ok && id.Value == guardName {
				return
			}
		}
		p.Node = &ast.CallNode{Callee: &ast.IdentifierNode{Value: guardName}, Arguments: []ast.Node{p.Node}}
	}
}

// errEvalDeadline stops a program at its deadline.
var errEvalDeadline = errors.New("ran out of time")

// checkBounded refuses constant ranges too long to be meant (1..100000).
func checkBounded(root ast.Node) error {
	var err error
	ast.Walk(&root, visitorFunc(func(n *ast.Node) {
		b, ok := (*n).(*ast.BinaryNode)
		if !ok || b.Operator != ".." || err != nil {
			return
		}
		lo, ok1 := b.Left.(*ast.IntegerNode)
		hi, ok2 := b.Right.(*ast.IntegerNode)
		if ok1 && ok2 && hi.Value-lo.Value+1 > MaxRangeLen {
			err = fmt.Errorf("range %d..%d has %d elements; at most %d are allowed", lo.Value, hi.Value, hi.Value-lo.Value+1, MaxRangeLen)
		}
	}))
	return err
}

// ValueContext runs the program and returns its result, stopping with an
// error when ctx ends or EvalLimit passes. env gains the guard function.
func (c *Condition) ValueContext(ctx context.Context, env map[string]any) (out any, err error) {
	limit := EvalLimit
	deadline := time.Now().Add(limit)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if env == nil {
		env = map[string]any{}
	}
	done := ctx.Done()
	n := 0
	env[guardName] = func(v any) any {
		n++
		if n&63 == 0 || n < 64 {
			select {
			case <-done:
				panic(errEvalDeadline)
			default:
			}
			if time.Now().After(deadline) {
				panic(errEvalDeadline)
			}
		}
		return v
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("evaluating %q: %v", c.Source, r)
		}
		if err != nil && (errors.Is(err, errEvalDeadline) || strings.Contains(err.Error(), errEvalDeadline.Error())) {
			why := fmt.Sprintf("the %s limit", limit)
			if ctx.Err() != nil {
				why = "its step's time limit"
				if cause := context.Cause(ctx); cause != nil {
					why += " (" + cause.Error() + ")"
				}
			} else if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
				why = "its step's time limit"
			}
			err = fmt.Errorf("evaluating %q: stopped: it ran longer than %s", c.Source, why)
			out = nil
		}
	}()
	out, err = expr.Run(c.program, env)
	if err != nil {
		return nil, fmt.Errorf("evaluating %q: %s", c.Source, firstLine(err.Error()))
	}
	return out, nil
}

type refVisitor struct {
	callees map[ast.Node]bool
	members map[ast.Node]bool
	refs    map[Ref]bool
}

func (v *refVisitor) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.CallNode:
		v.callees[x.Callee] = true
	case *ast.MemberNode:
		if id, ok := x.Node.(*ast.IdentifierNode); ok {
			if s, ok := x.Property.(*ast.StringNode); ok {
				v.members[id] = true
				v.refs[Ref{Root: id.Value, Member: s.Value}] = true
			}
		}
	}
}

func collectRefs(root ast.Node) []Ref {
	v := &refVisitor{callees: map[ast.Node]bool{}, members: map[ast.Node]bool{}, refs: map[Ref]bool{}}
	ast.Walk(&root, v)
	// A second pass for bare identifiers, now that callees and member roots
	// are known (Walk visits children before parents).
	ast.Walk(&root, visitorFunc(func(n *ast.Node) {
		if id, ok := (*n).(*ast.IdentifierNode); ok && !v.callees[id] && !v.members[id] {
			if id.Value != "" && !strings.HasPrefix(id.Value, "#") && id.Value != "$env" {
				v.refs[Ref{Root: id.Value}] = true
			}
		}
	}))
	out := make([]Ref, 0, len(v.refs))
	for r := range v.refs {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

type visitorFunc func(*ast.Node)

func (f visitorFunc) Visit(n *ast.Node) { f(n) }

// rewriteShorthands turns the seed's condition shorthands into expr syntax,
// leaving string literals alone: `null` → `nil`, `5%` → `5` when the percent
// sign ends an operand, `$labels` → `dollar_labels`.
func rewriteShorthands(src string) string {
	var b strings.Builder
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j < len(src) {
				j++
			}
			if j > len(src) {
				j = len(src)
			}
			b.WriteString(src[i:j])
			i = j
		case c >= '0' && c <= '9' && (i == 0 || !isIdentByte(src[i-1])):
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' || src[j] == '_') {
				j++
			}
			b.WriteString(src[i:j])
			if j < len(src) && src[j] == '%' && percentEndsOperand(src[j+1:]) {
				j++
			}
			i = j
		case c == '$':
			j := i + 1
			for j < len(src) && isIdentByte(src[j]) {
				j++
			}
			if j > i+1 && src[i+1:j] != "env" {
				b.WriteString("dollar_" + src[i+1:j])
			} else {
				b.WriteString(src[i:j])
			}
			i = j
		case isIdentByte(c):
			j := i
			for j < len(src) && isIdentByte(src[j]) {
				j++
			}
			word := src[i:j]
			if word == "null" && (i == 0 || src[i-1] != '.') {
				word = "nil"
			}
			b.WriteString(word)
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// percentEndsOperand reports whether what follows a `%` shows it is a unit
// rather than the modulo operator.
func percentEndsOperand(rest string) bool {
	rest = strings.TrimLeft(rest, " \t")
	if rest == "" {
		return true
	}
	switch rest[0] {
	case ')', ']', '}', ',', '&', '|', '=', '!', '<', '>', '?', ':':
		return true
	}
	for _, kw := range []string{"and ", "or ", "&&", "||"} {
		if strings.HasPrefix(rest, kw) {
			return true
		}
	}
	return false
}
